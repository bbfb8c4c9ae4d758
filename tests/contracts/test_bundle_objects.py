"""Proof bundles by reference: a dataset version, a grant, a read receipt, a notarised file
resolve to the transaction that records them; the bundle says what it proves about the
object, a claim that does not follow is refused, a reference to nothing is a clear error."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from contracts_kit import Net, digest
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.contracts import derive_id
from sharechain.contracts.bundle_objects import check_object, resolve
from sharechain.errors import NotFoundError
from sharechain.ledger.bundles import BundleError, build_bundle, verify_bundle
from sharechain.ledger.checkpoints import (
    block_hashes,
    checkpoint_of,
    cosign,
    origin_for,
    signed_checkpoint,
)


def _note(net: Net) -> str:
    hashes = block_hashes(net.store)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    signers = ("hospital-a", "hospital-b", "regulator")
    return signed_checkpoint(cp, [cosign(cp, o, net.emb.keys(o).signing) for o in signers])


def _bundle(net: Net, ref: str) -> tuple[dict[str, Any], str]:
    found = resolve(net.store, ref)
    doc = build_bundle(net.store, found.tx_id, _note(net), lineage=found.lineage, about=found.about)
    doc = json.loads(json.dumps(doc))  # as a file would carry it
    return doc, check_object(verify_bundle(doc), doc.get("object"))


def _version(net: Net, ds: str, n: int) -> str:
    payload = {
        "dataset": ds,
        "title": f"Blood tests, version {n}",
        "description": "Lab results of hospital A",
        "tags": ["lab"],
        "schema": [["patient_id", "string"]],
        "classification": "confidential",
        "plaintext_digest": digest(f"plain-{n}"),
        "ciphertext_digest": digest(f"cipher-v{n}"),
        "size": 2048,
        "segment_root": digest("segments"),
        "custody": "owner",
        "holders": [],
    }
    return derive_id("dataset", net.ok("hospital-a", "dataset.version", payload).tx_id)


def test_dataset_versions_are_proved_with_their_lineage(net: Net) -> None:
    v1 = net.register()
    v2 = _version(net, v1, 2)
    v3 = _version(net, v2, 3)
    doc, shows = _bundle(net, f"dataset:{v1}@3")
    assert doc["object"] == {"kind": "dataset-version", "dataset": v3, "version": 3}
    assert len(doc["lineage"]) == 2
    assert f"dataset {v3} is version 3 (of the line begun by {v1})" in shows
    _, shows2 = _bundle(net, f"dataset:{v3}@2")
    assert f"dataset {v2} is version 2" in shows2
    _, latest = _bundle(net, f"dataset:{v1}")  # a dataset id alone: that version
    assert f"dataset {v1} is version 1" in latest
    size = len(json.dumps(doc, separators=(",", ":")))
    assert size < 6500, size  # five entries, each with its tx and result audit paths
    # A claim that does not follow from the transactions is refused.
    claimed = copy.deepcopy(doc)
    claimed["object"]["version"] = 2
    with pytest.raises(BundleError, match=r"the transactions make dataset .* version 3"):
        check_object(verify_bundle(claimed), claimed["object"])
    cut = copy.deepcopy(doc)
    del cut["lineage"][0]
    with pytest.raises(BundleError, match="does not record a first dataset version"):
        check_object(verify_bundle(cut), cut["object"])
    with pytest.raises(NotFoundError, match="has versions 1 to 3, not version 4"):
        resolve(net.store, f"dataset:{v1}@4")


def test_grants_read_receipts_and_notarised_files(net: Net) -> None:
    ds = net.register()
    gid = net.granted(ds)
    doc, shows = _bundle(net, f"grant:{gid}")
    assert doc["object"] == {"kind": "grant", "grant": gid}
    assert f"grant {gid} was issued by access.approve of regulator" in shows
    forged = copy.deepcopy(doc)
    forged["object"]["grant"] = "0" * 64
    with pytest.raises(BundleError, match="not the one its issuing transaction derives"):
        check_object(verify_bundle(forged), forged["object"])

    net.release(gid)
    read = net.ok("hospital-b", "grant.read", {"grant": gid, "digest": digest("plain")})
    _, shows = _bundle(net, f"read:{read.tx_id.hex()}")
    assert f"hospital-b signed a read receipt of {digest('plain').hex()} under grant {gid}" in shows
    with pytest.raises(NotFoundError, match=r"not a valid read receipt .* it is a dataset"):
        resolve(net.store, f"read:{resolve(net.store, f'dataset:{ds}').tx_id.hex()}")

    filed = digest("certificate")
    net.ok("hospital-a", "notary.record", {"digest": filed, "note": "degree"})
    doc, shows = _bundle(net, f"notary:{filed.hex()}")
    assert f"the file with SHA-256 {filed.hex()} was notarised by hospital-a" in shows
    as_grant = copy.deepcopy(doc)
    as_grant["object"] = {"kind": "grant", "grant": gid}
    with pytest.raises(BundleError, match=r"a notary\.record transaction does not record a grant"):
        check_object(verify_bundle(as_grant), as_grant["object"])


def test_references_to_nothing_are_clear_errors(net: Net) -> None:
    for ref, reason in (
        ("dataset:nope", "no dataset 'nope' on this chain"),
        ("grant:" + "ab" * 32, "no grant"),
        ("notary:" + "ab" * 32, "no notarised file with SHA-256"),
        ("read:xyz", "not 64 hexadecimal digits"),
        ("ab" * 32, "is not on this chain"),
        ("colour:red", "is no reference"),
    ):
        with pytest.raises(NotFoundError, match=reason):
            resolve(net.store, ref)


def test_chain_proof_bundle_of_a_notarised_file_from_the_command_line(
    net: Net, tmp_path: Path
) -> None:
    f = tmp_path / "diploma.pdf"
    f.write_bytes(b"%PDF diploma\n")
    runner = CliRunner()
    d = str(net.path)
    r = runner.invoke(app, ["notarize", str(f), "--as", "hospital-a", "-d", d])
    assert r.exit_code == 0, r.stdout + r.stderr
    net.emb.close()
    out = tmp_path / "b.json"
    r = runner.invoke(app, ["chain", "proof", f"file:{f}", "--bundle", str(out), "-d", d])
    assert r.exit_code == 0, r.stdout + r.stderr
    r = runner.invoke(app, ["verify-bundle", str(out), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    got = json.loads(r.stdout)
    assert got["object"]["kind"] == "notarised-file" and got["validation_code_proved"] is True
    assert got["code"] == "valid" and got["reason"] == ""
    assert "was notarised by hospital-a" in got["shows"]
    r = runner.invoke(app, ["chain", "proof", "grant:" + "0" * 64, "--bundle", str(out), "-d", d])
    assert r.exit_code != 0 and "resolves to nothing: no grant" in " ".join(
        (r.stdout + r.stderr).split()
    )
