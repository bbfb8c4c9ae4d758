"""RFC 3161 timestamps of a checkpoint, answered by a local `openssl ts` TSA."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from tsa_kit import Tsa, make_tsa, openssl

from sharechain.ledger.timestamps import (
    TimestampError,
    load_certificates,
    timestamp_request,
    verify_timestamp,
)

TEXT = (
    "sharechain/b92062c9c52d658082f488798aed8855a01e0331398695200c90ccb934fefc3c\n"
    "2\nYDbhzFKBeuq15cEgOWw/5r35bmbqMFSJRrD91Lhf3vI=\n"
)


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Tsa:
    return make_tsa(tmp_path_factory.mktemp("tsa") / "one")


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Tsa:
    return make_tsa(tmp_path_factory.mktemp("tsa") / "two", "Other")


def _cert(path: Path) -> x509.Certificate:
    (cert,) = load_certificates(path.read_bytes())
    return cert


def test_a_checkpoint_timestamp_verifies(tsa: Tsa) -> None:
    req = timestamp_request(TEXT)
    assert req.digest == hashlib.sha256(TEXT.encode()).digest() and req.nonce is not None
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    resp = tsa.reply(req.der)
    got = verify_timestamp(
        resp, TEXT, roots=[_cert(tsa.ca)], tsa_certificate=_cert(tsa.cert), nonce=req.nonce
    )
    assert got.digest == req.digest and got.tsa == "CN=Test TSA" and got.policy == "1.2.3.4.1"
    now = datetime.datetime.now(datetime.UTC)
    assert before - datetime.timedelta(seconds=1) <= got.time <= now
    assert verify_timestamp(resp, TEXT, roots=[_cert(tsa.ca)]).serial == got.serial


def test_a_token_over_another_text_is_refused(tsa: Tsa) -> None:
    resp = tsa.reply(timestamp_request(TEXT).der)
    with pytest.raises(TimestampError, match="over another digest"):
        verify_timestamp(resp, TEXT.replace("\n2\n", "\n3\n"), roots=[_cert(tsa.ca)])


def test_a_token_from_another_tsa_is_refused(tsa: Tsa, other: Tsa) -> None:
    resp = other.reply(timestamp_request(TEXT).der)
    with pytest.raises(TimestampError, match="does not verify"):
        verify_timestamp(resp, TEXT, roots=[_cert(tsa.ca)])
    with pytest.raises(TimestampError, match="does not verify"):
        verify_timestamp(resp, TEXT, roots=[_cert(other.ca)], tsa_certificate=_cert(tsa.cert))


def test_a_tampered_token_or_nonce_is_refused(tsa: Tsa) -> None:
    req = timestamp_request(TEXT)
    resp = bytearray(tsa.reply(req.der))
    with pytest.raises(TimestampError, match="does not verify"):
        verify_timestamp(bytes(resp), TEXT, roots=[_cert(tsa.ca)], nonce=(req.nonce or 0) + 1)
    at = bytes(resp).index(req.digest)  # inside the signed TSTInfo
    resp[at - 40] ^= 1
    with pytest.raises(TimestampError):
        verify_timestamp(bytes(resp), TEXT, roots=[_cert(tsa.ca)])
    with pytest.raises(TimestampError, match="not an RFC 3161"):
        verify_timestamp(b"\x30\x03\x02\x01\x00", TEXT, roots=[_cert(tsa.ca)])


def test_a_sha1_imprint_and_bad_inputs_are_refused(tsa: Tsa, tmp_path: Path) -> None:
    (tmp_path / "d").write_text(TEXT)
    query = tmp_path / "q.tsq"
    openssl("ts", "-query", "-data", "d", "-sha1", "-cert", "-out", query, cwd=tmp_path)
    resp = tsa.reply(query.read_bytes())
    with pytest.raises(TimestampError, match="not SHA-256"):
        verify_timestamp(resp, TEXT, roots=[_cert(tsa.ca)])
    with pytest.raises(TimestampError, match="root authority"):
        verify_timestamp(resp, TEXT, roots=[])
    with pytest.raises(TimestampError, match="larger than"):
        verify_timestamp(bytes(70_000), TEXT, roots=[_cert(tsa.ca)])
    with pytest.raises(TimestampError, match="not a PEM"):
        load_certificates(b"nope")
