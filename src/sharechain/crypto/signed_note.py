"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures.

A note is UTF-8 text ending in a newline, a blank line, then one signature line
per signer: an em dash, a space, the key name, a space, and the base64 of a
4-byte key id followed by the Ed25519 signature of the text (the text includes
its final newline). The key id is the first four bytes of
`SHA-256(key name || 0x0A || 0x01 || public key)`, 0x01 naming Ed25519. A
verifier key is written `name+<key id hex>+<base64(0x01 || public key)>`, as
golang.org/x/mod/sumdb/note does, so the same keys work with Go's tooling.

The format is what other transparency logs and witnesses speak; this module
knows nothing of what the text says (`sharechain.ledger.checkpoints` does).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from sharechain.crypto.signing import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey, verify
from sharechain.errors import EncodingError

__all__ = [
    "ED25519_TYPE",
    "MAX_SIGNATURES",
    "NoteSignature",
    "SignedNote",
    "format_note",
    "note_key_id",
    "parse_note",
    "parse_verifier_key",
    "sign_note",
    "verifier_key",
    "verify_note_signature",
]

ED25519_TYPE = 0x01
"""The signature type byte of Ed25519 note signatures."""
MAX_SIGNATURES = 64
"""Notes with more signature lines are refused (the spec asks verifiers for at least 16)."""

_EM_DASH = "\u2014"
_KEY_NAME = re.compile(r"^[^\s+]+$")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    """The key name, e.g. `hospital-a/21fe31dfa154a261`."""
    key_id: bytes
    """Four bytes: `SHA-256(name || 0x0A || 0x01 || public key)[:4]`."""
    signature: bytes
    """The Ed25519 signature of the note text (64 bytes; other types are kept opaque)."""

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{_EM_DASH} {self.name} {blob}\n"


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A note's text and its signatures, in the order they appear."""

    text: str
    """The signed text, ending in a newline."""
    signatures: tuple[NoteSignature, ...]
    """The signature lines."""


def _check_name(name: str) -> str:
    if not name or not _KEY_NAME.match(name):
        raise EncodingError(f"note key name {name!r} must be non-empty, without spaces or '+'")
    return name


def note_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 key under `name` (c2sp.org/signed-note)."""
    data = _check_name(name).encode() + b"\n" + bytes([ED25519_TYPE]) + public_key
    return hashlib.sha256(data).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """`name+<key id hex>+<base64(0x01 || public key)>`."""
    blob = base64.b64encode(bytes([ED25519_TYPE]) + public_key).decode()
    return f"{name}+{note_key_id(name, public_key).hex()}+{blob}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes]:
    """(name, public key) from a verifier key, checking its key id."""
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise EncodingError("a verifier key is name+keyid+base64(0x01 || public key)")
    name, kid, blob = parts
    try:
        raw = base64.b64decode(blob, validate=True)
    except binascii.Error:
        raise EncodingError("verifier key is not valid base64") from None
    if len(raw) != 1 + PUBLIC_KEY_SIZE or raw[0] != ED25519_TYPE:
        raise EncodingError("verifier key is not an Ed25519 key (type 0x01, 32 bytes)")
    if kid != note_key_id(name, raw[1:]).hex():
        raise EncodingError(f"verifier key id {kid} does not match its name and key")
    return name, raw[1:]


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise EncodingError("note text must end with a newline")
    if _CONTROL.search(text):
        raise EncodingError("note text must not contain control characters other than newline")


def sign_note(text: str, name: str, key: SigningKey) -> NoteSignature:
    """Sign `text` (which must end in a newline) with `key` under `name`."""
    _check_text(text)
    return NoteSignature(
        name, note_key_id(name, key.public_key), key.sign(b"", text.encode("utf-8"))
    )


def format_note(note: SignedNote) -> str:
    """The note as it travels: text, blank line, signature lines."""
    _check_text(note.text)
    if not note.signatures:
        raise EncodingError("a signed note needs at least one signature")
    return note.text + "\n" + "".join(s.line() for s in note.signatures)


def _parse_line(line: str) -> NoteSignature:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != _EM_DASH:
        raise EncodingError(f"malformed note signature line {line!r}")
    name = _check_name(parts[1])
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except binascii.Error:
        raise EncodingError(f"signature of {name} is not valid base64") from None
    if len(raw) < 5:
        raise EncodingError(f"signature of {name} is too short")
    return NoteSignature(name, raw[:4], raw[4:])


def parse_note(data: str | bytes) -> SignedNote:
    """Split a signed note into text and signatures, refusing anything malformed."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise EncodingError("a signed note must be valid UTF-8") from None
    if _CONTROL.search(data):
        raise EncodingError("a signed note must not contain control characters other than newline")
    # The signatures follow the *last* blank line; the text may hold blank lines.
    cut = data.rfind("\n\n")
    if cut < 0 or not data.endswith("\n"):
        raise EncodingError("a signed note is text, a blank line, then signature lines")
    text, sigs = data[: cut + 1], data[cut + 2 :]
    lines = sigs[:-1].split("\n")
    if not sigs or len(lines) > MAX_SIGNATURES:
        raise EncodingError(f"a signed note has 1 to {MAX_SIGNATURES} signature lines")
    return SignedNote(text, tuple(_parse_line(x) for x in lines))


def verify_note_signature(note: SignedNote, sig: NoteSignature, public_key: bytes) -> None:
    """Raise unless `sig` is an Ed25519 signature of the note's text by `public_key`
    under its name (the key id must match too)."""
    if sig.key_id != note_key_id(sig.name, public_key):
        raise EncodingError(f"key id of {sig.name}'s signature does not match its key")
    if len(sig.signature) != SIGNATURE_SIZE:
        raise EncodingError(f"signature of {sig.name} is not an Ed25519 signature")
    verify(public_key, sig.signature, b"", note.text.encode("utf-8"))
