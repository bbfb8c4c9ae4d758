"""Codec benchmark: deterministic CBOR of the ledger's state values, C writer vs Python.

A validating peer encodes every state value a block writes (`BlockState.encoded_writes`)
and re-encodes what it checks for canonical form, so `sharechain.codec.encode` runs a few
times per transaction. This measures it on the three shapes most written: a notary
record (`contracts/notary.py`), an access request (`contracts/access.py`) and a grant
after a key release (`contracts/grants.py`), through `codec.encode` with the C writer
(`sharechain._cborx`) and with the Python one (`codec._plain_python`), alternately, best
of several rounds each. Figures: microseconds per value for each, and their ratio.
Without the C writer built only the Python figures are reported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sharechain import codec

__all__ = ["run", "state_values"]


def state_values() -> dict[str, dict[str, Any]]:
    """One value of each shape, with typical sizes (ids, 32-byte digests, ms times)."""
    digest, tx_id = bytes(range(32)), bytes(range(32, 64))
    now, fields = 1_764_770_000_123, ["name", "amount", "date", "iban"]
    request = {
        "id": "request-" + "ab" * 8,
        "dataset": "dataset-" + "cd" * 8,
        "owner": "org-alpha",
        "requester": "org-beta",
        "purpose": "fraud analytics",
        "duration": 86_400_000,
        "fields": fields,
        "justification": "joint investigation of case 42",
        "status": "open",
        "approvals": [],
        "grant": "",
        "approval": {"of": ["org-alpha", "org-gamma"], "quorum": 2},
        "masking": "",
        "max_uses": 10,
        "inbox": ["org-alpha", "supervisor"],
        "created_at": now,
        "height": 12_345,
        "tx_id": tx_id,
    }
    grant = {
        "id": "grant-" + "ef" * 8,
        "request": request["id"],
        "dataset": request["dataset"],
        "grantee": "org-beta",
        "owner": "org-alpha",
        "purpose": "fraud analytics",
        "fields": fields,
        "masking": "",
        "issued_at": now,
        "expires_at": now + 86_400_000,
        "max_uses": 10,
        "uses": 3,
        "reads": 1,
        "status": "active",
        "approvals": [{"org": "org-alpha", "at": now - 123}],
        "auto_rule": "",
        "height": 12_345,
        "tx_id": tx_id,
        "last_release": {
            "by": "org-alpha",
            "to": "org-beta",
            "epoch": 2,
            "wrapped_key_digest": digest,
            "session": "s-1",
            "height": 12_346,
            "timestamp": now + 876,
        },
    }
    notary = {
        "digest": digest,
        "recorder": "org-alpha",
        "note": "quarterly report v3",
        "tx_id": tx_id,
        "height": 12_345,
        "timestamp": now,
        "endorsements": [],
    }
    return {"notary_record": notary, "access_request": request, "grant": grant}


def _us_per_value(value: Any, writer: Callable[[Any], bytes | None], n: int) -> float:
    saved = codec._plain
    codec._plain = writer
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            codec.encode(value)
        return (time.perf_counter() - t0) / n * 1e6
    finally:
        codec._plain = saved


def run(rounds: int = 7, n: int = 20_000) -> dict[str, Any]:
    """Microseconds per `codec.encode` of each shape, C and Python writers side by side."""
    out: dict[str, Any] = {"codec_c_writer_built": codec.ACCELERATED}
    for name, value in state_values().items():
        best_py = best_c = float("inf")
        for _ in range(rounds):  # alternately, so both see the same load
            best_py = min(best_py, _us_per_value(value, codec._plain_python, n))
            if codec._PLAIN_C is not None:
                best_c = min(best_c, _us_per_value(value, codec._PLAIN_C, n))
        out[f"codec_{name}_bytes"] = len(codec.encode(value))
        out[f"codec_{name}_python_us"] = round(best_py, 3)
        if codec._PLAIN_C is not None:
            out[f"codec_{name}_c_us"] = round(best_c, 3)
            out[f"codec_{name}_python_over_c"] = round(best_py / best_c, 2)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
