"""A signed transaction is valid for a while only: a withheld one cannot be submitted later.

Attack: someone obtains a transaction its sender signed but never submitted
(an approval prepared and withdrawn, a request from a stolen outbox) and
submits it days later, when its sender would no longer make it. Replay
protection does not help: the transaction was never on the chain. Defence:
its signed `created_at` must lie within the consortium's `tx_validity_ms`
(genesis governance, 24 h by default) before its block's time and at most
30 s after it; otherwise it is refused (`tx_expired`, `tx_from_future`) by
every peer alike, since only block time counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sharechain.contracts import notary
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ChainError
from sharechain.ledger import validation as v
from sharechain.ledger.blocks import make_block, results_root, sign_header
from sharechain.ledger.chain import Ledger
from sharechain.ledger.genesis import Genesis, genesis_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction
from sharechain.ledger.verify import verify_ledger
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

T0 = 1_750_000_000_000
DAY = 24 * 3_600_000
KEYS = OrgKeys.from_secrets("hospital-a", bytes(32), bytes(range(32)))


def _ledger(path: Path, governance: Mapping[str, Any] | None = None) -> Ledger:
    org = Organisation(
        "hospital-a", ("member", "admin"), KEYS.signing.public_key, KEYS.encryption_public
    )
    ledger = Ledger(Store(path), notary.registry())
    ledger.commit(genesis_block(Genesis("test", (org,), dict(governance or {}), T0)))
    return ledger


def _signed_at(created_at: int, n: int = 0) -> bytes:
    return sign_transaction(
        KEYS.signing,
        notary.RECORD,
        "hospital-a",
        {"digest": hashlib.sha256(b"%d" % n).digest()},
        now=lambda: created_at / 1000,
        rng=lambda size: n.to_bytes(size, "big"),
    ).raw


def _codes(ledger: Ledger, raws: list[bytes], block_time: int) -> list[str]:
    block, ex = ledger.build_block(
        raws, orderer="hospital-a", key=KEYS.signing, timestamp=block_time
    )
    ledger.commit(block, ex)
    return [r.code for r in block.results]


def test_a_transaction_withheld_past_the_default_day_is_expired(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "l.db")
    now = T0 + 10 * DAY
    codes = _codes(
        ledger,
        [_signed_at(now - DAY, 1), _signed_at(now - DAY - 1, 2), _signed_at(now - 5, 3)],
        now,
    )
    assert codes == [v.VALID, v.TX_EXPIRED, v.VALID]
    # The expired one wrote nothing: its digest is not notarised.
    assert ledger.store.get(f"notary/{hashlib.sha256(b'2').hexdigest()}") is None
    assert ledger.store.get(f"notary/{hashlib.sha256(b'1').hexdigest()}") is not None


def test_a_transaction_dated_after_the_block_beyond_the_skew_is_refused(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "l.db")
    now = T0 + DAY
    skew = v.TX_FUTURE_SKEW_MS
    codes = _codes(ledger, [_signed_at(now + skew, 1), _signed_at(now + skew + 1, 2)], now)
    assert codes == [v.VALID, v.TX_FROM_FUTURE]


def test_the_window_is_the_genesis_governance_setting(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "l.db", {v.TX_VALIDITY_SETTING: 60_000})
    now = T0 + DAY
    codes = _codes(ledger, [_signed_at(now - 60_000, 1), _signed_at(now - 60_001, 2)], now)
    assert codes == [v.VALID, v.TX_EXPIRED]


@pytest.mark.parametrize("bad", [0, -1, "24h", True, 1.5])
def test_genesis_refuses_a_malformed_validity_window(bad: object) -> None:
    org = Organisation("hospital-a", ("member",), KEYS.signing.public_key, KEYS.encryption_public)
    with pytest.raises(ValueError, match="tx_validity_ms must be a positive number"):
        genesis_block(Genesis("test", (org,), {v.TX_VALIDITY_SETTING: bad}, T0))


def test_peers_refuse_a_block_that_calls_an_expired_transaction_valid(tmp_path: Path) -> None:
    builder = _ledger(tmp_path / "a.db")
    peer = _ledger(tmp_path / "b.db")
    now = T0 + 3 * DAY
    stale = _signed_at(now - 2 * DAY, 1)
    fresh_block, ex = builder.build_block(
        [stale], orderer="hospital-a", key=KEYS.signing, timestamp=now
    )
    assert [r.code for r in ex.results] == [v.TX_EXPIRED]
    peer.validate_block(fresh_block)  # every peer reaches the same code
    # An orderer that lets it through (its results say valid) is caught on re-execution.
    forged_ex = builder.build_block(
        [stale], orderer="hospital-a", key=KEYS.signing, timestamp=now - DAY
    )[1]
    header = fresh_block.header
    forged_header = dataclasses.replace(
        header,
        results_root=results_root(fresh_block.tx_ids, forged_ex.results),
        state_delta_hash=forged_ex.delta_hash,
    )
    forged = make_block(
        forged_header, sign_header(forged_header, KEYS.signing), [stale], forged_ex.results
    )
    with pytest.raises(ChainError, match="re-executes to 'tx_expired'"):
        peer.validate_block(forged)


def test_replaying_old_blocks_long_after_uses_their_own_time(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "l.db")
    for day in range(1, 4):
        assert _codes(ledger, [_signed_at(T0 + day * DAY - 1000, day)], T0 + day * DAY) == [v.VALID]
    report = verify_ledger(ledger.store, notary.registry())
    assert report.ok and report.height == 3


def test_embedded_refuses_a_transaction_signed_two_days_before(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    path = tmp_path / "c"
    init_consortium(path, (OrgSpec("hospital-a", ("member", "admin")),), now=lambda: now[0])
    with Embedded(path, now=lambda: now[0]) as emb:
        withheld = emb.sign("hospital-a", notary.RECORD, {"digest": bytes(32)})
        now[0] += 2 * 86_400
        (receipt,) = emb.submit_raw([withheld.raw], orderer="hospital-a")
        assert receipt.code == v.TX_EXPIRED and "sign it again" in receipt.reason
        # Signed again now, the same record goes through.
        assert emb.submit("hospital-a", notary.RECORD, {"digest": bytes(32)}).ok
