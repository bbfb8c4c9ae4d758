"""RFC 3161 trusted timestamps for checkpoints: an anchor outside every chain.

A time-stamping authority (TSA) signs "this digest existed at this time". For
a checkpoint the digest is SHA-256 of the checkpoint *text* (origin, size,
root: the part members sign, without the signature lines), so one timestamp
covers the tree whoever cosigned it. The request is an RFC 3161
`TimeStampReq` (SHA-256 message imprint, a nonce, asking for the TSA's
certificate); the answer a `TimeStampResp` whose token is CMS SignedData over
a `TSTInfo`.

Parsing and checking the token (status granted, CMS signature, certificate
chain to the given roots, the TSA certificate's critical `timeStamping`
extended key usage, nonce) is `rfc3161-client`'s (maintained by Trail of Bits
for sigstore); this module only insists on SHA-256, compares the digest, pins
the TSA certificate when given one, and turns every failure into one error
type with the reason. docs/proofs.md shows how to run a TSA with `openssl ts`.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    SignerInfo,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from sharechain.errors import IntegrityError

__all__ = [
    "MAX_RESPONSE_BYTES",
    "Timestamp",
    "TimestampError",
    "TimestampRequest",
    "load_certificates",
    "timestamp_request",
    "verify_timestamp",
]

MAX_RESPONSE_BYTES = 64 * 1024
"""Larger answers are refused before parsing (a token with a chain is a few KB)."""
_SHA256 = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")


class TimestampError(IntegrityError):
    """A timestamp token is malformed, not from the trusted TSA, or not over this text."""


@dataclass(frozen=True, slots=True)
class TimestampRequest:
    """A DER `TimeStampReq` and what the answer must echo."""

    der: bytes
    """The request to send to the TSA (`application/timestamp-query`)."""
    digest: bytes
    """SHA-256 of the text."""
    nonce: int | None
    """The request's nonce (chosen by the library), to check against the answer."""


@dataclass(frozen=True, slots=True)
class Timestamp:
    """What a verified token says."""

    digest: bytes
    """SHA-256 of the timestamped text."""
    time: datetime.datetime
    """`genTime`: when the TSA saw the digest (UTC)."""
    serial: int
    """The token's serial number at the TSA."""
    policy: str
    """The TSA policy OID it was issued under."""
    tsa: str
    """Subject of the TSA certificate that signed it (RFC 4514)."""


def timestamp_request(text: str) -> TimestampRequest:
    """The RFC 3161 request for SHA-256 of `text` (a checkpoint's text)."""
    data = text.encode()
    req = (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    return TimestampRequest(req.as_bytes(), hashlib.sha256(data).digest(), req.nonce)


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TimestampError(f"not a PEM certificate file: {exc}") from None
    return certs


def verify_timestamp(
    response: bytes,
    text: str,
    *,
    roots: Sequence[x509.Certificate],
    tsa_certificate: x509.Certificate | None = None,
    nonce: int | None = None,
) -> Timestamp:
    """Return what the token says if it is a granted RFC 3161 answer over SHA-256 of
    `text`, signed by a certificate chaining to `roots` (and, when given, by
    `tsa_certificate` itself) with the `timeStamping` usage; raise otherwise."""
    if len(response) > MAX_RESPONSE_BYTES:
        raise TimestampError(f"timestamp response is larger than {MAX_RESPONSE_BYTES} bytes")
    if not roots:
        raise TimestampError("give the certificate of the TSA's root authority")
    try:
        resp = decode_timestamp_response(response)
        info = resp.tst_info
        imprint = info.message_imprint
    except ValueError as exc:
        raise TimestampError(f"not an RFC 3161 timestamp response: {exc}") from None
    if imprint.hash_algorithm != _SHA256:
        raise TimestampError(
            f"the token is over a {imprint.hash_algorithm.dotted_string} digest, not SHA-256"
        )
    digest = hashlib.sha256(text.encode()).digest()
    if imprint.message != digest:
        raise TimestampError("the token is over another digest: it does not timestamp this text")
    builder = VerifierBuilder(roots=list(roots), tsa_certificate=tsa_certificate, nonce=nonce)
    try:
        builder.build().verify(resp, digest)
    except (VerificationError, ValueError) as exc:
        raise TimestampError(f"the timestamp token does not verify: {exc}") from None
    when = info.gen_time
    return Timestamp(
        digest=digest,
        time=when.replace(tzinfo=datetime.UTC) if when.tzinfo is None else when,
        serial=info.serial_number,
        policy=info.policy.dotted_string,
        tsa=_signer(resp.signed_data.certificates, resp.signed_data.signer_infos, tsa_certificate),
    )


def _signer(certs: set[bytes], infos: set[SignerInfo], pinned: x509.Certificate | None) -> str:
    """Subject of the certificate the (single, already checked) signer info names."""
    info = next(iter(infos))
    for der in certs:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == info.issuer and cert.serial_number == info.serial_number:
            return cert.subject.rfc4514_string()
    return pinned.subject.rfc4514_string() if pinned is not None else ""
