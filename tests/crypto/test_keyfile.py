"""Key files: round trip, mode 0600, and a clear error for every way they go wrong."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sharechain.crypto.keyfile import OrgKeys, load_keys, save_keys
from sharechain.errors import ConfigError


def _keys() -> OrgKeys:
    counter = iter(range(256))
    return OrgKeys.generate("hospital-a", rng=lambda n: bytes([next(counter)]) * n)


def test_round_trip_and_mode(tmp_path: Path) -> None:
    keys = _keys()
    path = tmp_path / "keys" / "hospital-a.key"
    save_keys(keys, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.with_name(path.name + ".tmp").exists()
    loaded = load_keys(path)
    assert loaded == keys
    assert loaded.sign_key_id == keys.signing.key_id
    assert len(loaded.encryption_key_id) == 32


def test_x25519_public_key_matches_independent_derivation() -> None:
    keys = _keys()
    expected = (
        X25519PrivateKey.from_private_bytes(keys.encryption_private)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    assert keys.encryption_public == expected
    assert keys.signing.public_key != keys.encryption_public


def test_repr_hides_secrets() -> None:
    keys = _keys()
    text = repr(keys)
    assert keys.signing.seed.hex() not in text
    assert keys.encryption_private.hex() not in text
    assert "hospital-a" in text


def test_missing_file_names_file_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "nobody.key"
    with pytest.raises(ConfigError) as err:
        load_keys(path)
    assert str(path) in str(err.value) and "sharechain init" in str(err.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o700 | 0o007])
def test_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "a.key"
    save_keys(_keys(), path)
    os.chmod(path, mode)
    with pytest.raises(ConfigError) as err:
        load_keys(path)
    assert str(path) in str(err.value) and f"chmod 600 {path}" in str(err.value)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o600)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda body: "not json at all",
        lambda body: json.dumps({**body, "version": 99}),
        lambda body: json.dumps({k: v for k, v in body.items() if k != "ed25519_seed"}),
        lambda body: json.dumps({**body, "ed25519_seed": "zz" * 32}),
        lambda body: json.dumps({**body, "ed25519_seed": "00" * 31}),
        lambda body: json.dumps({**body, "x25519_private": 7}),
        lambda body: json.dumps([1, 2, 3]),
        lambda body: json.dumps({**body, "ed25519_public": "00" * 32}),
    ],
    ids=[
        "not-json",
        "version",
        "missing-seed",
        "bad-hex",
        "short-seed",
        "wrong-type",
        "not-an-object",
        "public-mismatch",
    ],
)
def test_corrupt_file_names_file(tmp_path: Path, mutate: object) -> None:
    path = tmp_path / "a.key"
    save_keys(_keys(), path)
    body = json.loads(path.read_text())
    _write(path, mutate(body))  # type: ignore[operator]  # parametrized lambdas
    with pytest.raises(ConfigError) as err:
        load_keys(path)
    assert str(path) in str(err.value) and "corrupt" in str(err.value)


def test_binary_garbage_is_corrupt_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "a.key"
    path.write_bytes(b"\xff\xfe\x00garbage")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="corrupt"):
        load_keys(path)


def test_save_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "a.key"
    first = _keys()
    save_keys(first, path)
    second = OrgKeys.generate("hospital-a", rng=lambda n: b"\x42" * n)
    save_keys(second, path)
    assert load_keys(path) == second
    assert [p.name for p in tmp_path.iterdir()] == ["a.key"]
