"""docs/proofs.md's worked example is what the code produces, and the bundle printed
there verifies as printed."""

from __future__ import annotations

import json
import re
from pathlib import Path

from proofs_example import example

from sharechain.ledger.bundles import verify_bundle

DOC = (Path(__file__).parents[2] / "docs" / "proofs.md").read_text("utf-8")


def test_every_example_value_appears_verbatim() -> None:
    values = example()
    for name, value in values.items():
        assert value in DOC, f"docs/proofs.md is out of date: {name} should read {value}"


def test_the_printed_bundle_verifies() -> None:
    block = re.search(r"```json\n(.*?)\n```", DOC, re.S)
    assert block is not None
    doc = json.loads(block.group(1))
    verify_bundle(doc)
    assert doc["txs"][0]["height"] == 1
