"""C2SP signed notes: golang.org/x/mod/sumdb/note's published example byte for byte,
and every malformed note refused."""

from __future__ import annotations

import base64

import pytest

from sharechain.crypto.signed_note import (
    NoteSignature,
    SignedNote,
    format_note,
    note_key_id,
    parse_note,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note_signature,
)
from sharechain.crypto.signing import SigningKey
from sharechain.errors import EncodingError, InvalidSignatureError

# The example of golang.org/x/mod/sumdb/note's documentation (a second implementation).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def _go_key() -> SigningKey:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert seed[0] == 1
    return SigningKey.from_seed(seed[1:])


def test_go_example_byte_for_byte() -> None:
    key = _go_key()
    assert note_key_id("PeterNeumann", key.public_key).hex() == "c74f20a3"
    assert verifier_key("PeterNeumann", key.public_key) == GO_VKEY
    sig = sign_note(GO_TEXT, "PeterNeumann", key)
    assert format_note(SignedNote(GO_TEXT, (sig,))) == GO_NOTE
    note = parse_note(GO_NOTE)
    assert note.text == GO_TEXT and note.signatures == (sig,)
    name, public = parse_verifier_key(GO_VKEY)
    assert (name, public) == ("PeterNeumann", key.public_key)
    verify_note_signature(note, note.signatures[0], public)


def test_text_may_hold_blank_lines() -> None:
    key = _go_key()
    text = "a\n\nb\n"
    out = format_note(SignedNote(text, (sign_note(text, "k", key), sign_note(text, "j", key))))
    note = parse_note(out.encode())
    assert note.text == text and [s.name for s in note.signatures] == ["k", "j"]


def test_tampered_text_or_signature_is_refused() -> None:
    key = _go_key()
    note = parse_note(GO_NOTE.replace("answer", "Answer"))
    with pytest.raises(InvalidSignatureError):
        verify_note_signature(note, note.signatures[0], key.public_key)
    good = parse_note(GO_NOTE)
    s = good.signatures[0]
    forged = NoteSignature(s.name, s.key_id, bytes(64))
    with pytest.raises(InvalidSignatureError):
        verify_note_signature(good, forged, key.public_key)


def test_wrong_key_id_or_name_is_refused() -> None:
    key = _go_key()
    note = parse_note(GO_NOTE)
    s = note.signatures[0]
    with pytest.raises(EncodingError, match="key id"):
        verify_note_signature(note, NoteSignature("PeterN", s.key_id, s.signature), key.public_key)
    other = SigningKey.from_seed(bytes(32))
    with pytest.raises(EncodingError, match="key id"):
        verify_note_signature(note, s, other.public_key)
    with pytest.raises(EncodingError, match="key id"):
        parse_verifier_key(GO_VKEY.replace("c74f20a3", "c74f20a4"))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (GO_TEXT, "blank line"),
        (GO_TEXT + "\n", "signature lines"),
        (GO_NOTE[:-1], "blank line"),
        (GO_NOTE.replace("\u2014", "-"), "malformed"),
        (GO_NOTE.replace("PeterNeumann", "Peter Neumann"), "malformed"),
        (GO_NOTE.replace("PeterNeumann", "Peter+Neumann"), "key name"),
        (GO_NOTE.replace("x08go", "x08g!"), "base64"),
        (GO_NOTE.replace("then", "\tthen"), "control"),
        (GO_TEXT + "\n\u2014 k AAAA\n", "too short"),
        (b"\xff\n\n\xe2\x80\x94 k AAAAAAAA\n", "UTF-8"),
    ],
)
def test_malformed_notes_are_refused(data: str | bytes, reason: str) -> None:
    with pytest.raises(EncodingError, match=reason):
        parse_note(data)


def test_too_many_signatures_and_bad_text_are_refused() -> None:
    line = GO_NOTE[len(GO_TEXT) + 1 :]
    with pytest.raises(EncodingError, match="signature lines"):
        parse_note(GO_TEXT + "\n" + line * 65)
    with pytest.raises(EncodingError, match="newline"):
        sign_note("no newline", "k", _go_key())
    with pytest.raises(EncodingError, match="at least one"):
        format_note(SignedNote(GO_TEXT, ()))
