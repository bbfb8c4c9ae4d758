"""docs/format.md's sealed export of the example chain is what `chain export` writes,
and it verifies (sharechain's verifier and the independent one)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from proofs_example import example_chain
from test_export_independent import verify_export as independent_verify

from sharechain.contracts import notary
from sharechain.ledger.checkpoints import block_hashes
from sharechain.ledger.export import export_records, verify_export
from sharechain.ledger.export_seal import genesis_note, seal_line

DOC = (Path(__file__).parents[2] / "docs" / "format.md").read_text("utf-8")


def example_export() -> list[str]:
    """The example chain exported as `sharechain chain export` writes it."""
    store, keys, _ = example_chain()
    signers = {"hospital-a": keys.signing}
    genesis = genesis_note(block_hashes(store)[0], signers)
    records = export_records(
        store, notary.registry(), seal=lambda s: seal_line(s, signers, genesis)
    )
    return [json.dumps(r, separators=(",", ":"), sort_keys=True) for r in records]


def _printed() -> list[str]:
    found = re.search(r"```jsonl\n(.*?)\n```", DOC, re.S)
    assert found is not None, "docs/format.md lost its example export"
    return found.group(1).split("\n")


def test_the_printed_export_is_what_the_code_writes() -> None:
    assert _printed() == example_export(), "docs/format.md's example export is out of date"


def test_the_printed_export_verifies() -> None:
    lines = _printed()
    assert verify_export(lines, notary.registry()).blocks == 2
    assert independent_verify(lines)["height"] == 1


if __name__ == "__main__":
    print("\n".join(example_export()))
