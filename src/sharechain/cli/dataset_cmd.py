"""`sharechain dataset register|version|derive|retire|purge|list|show|lineage`.

Datasets are described on the chain by their digests and metadata; the
encrypted payloads come with the data plane. Ids may be given as a unique hex
prefix. Every command takes `--json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from sharechain.api.wire import to_json
from sharechain.cli.common import (
    AsOrg,
    DataDirOpt,
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    NodeOpt,
    SignerOpt,
    command_group,
    console,
    emit_json,
    fail,
    print_table,
    shown,
)
from sharechain.cli.masking_opts import MaskingOpt, masked_policy
from sharechain.cli.target import Target, open_plane
from sharechain.contracts import datasets as ds_contract
from sharechain.contracts import privacy_queries as pq
from sharechain.contracts.policies import PolicyError, policy_from_mapping, policy_to_value
from sharechain.ordering.solo import Receipt
from sharechain.sharing.records import derive_id

__all__ = ["hex_digest", "load_policy", "register", "report"]

IdArg = Annotated[str, typer.Argument(help="Dataset id (or a unique prefix of it).")]
Title = Annotated[str | None, typer.Option(help="Short name.")]
Description = Annotated[str | None, typer.Option(help="Free-text description.")]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="Catalogue tag (repeatable).")]
Columns = Annotated[
    list[str] | None, typer.Option("--column", help="Schema column NAME:TYPE (repeatable).")
]
Classification = Annotated[
    str | None, typer.Option(help="public, internal, confidential or secret.")
]
Plain = Annotated[str, typer.Option("--plaintext-digest", help="SHA-256 of the plaintext (hex).")]
Cipher = Annotated[
    str, typer.Option("--ciphertext-digest", help="SHA-256 of the ciphertext (hex).")
]
Size = Annotated[int, typer.Option(help="Plaintext size in bytes.")]
SegRoot = Annotated[
    str, typer.Option("--segment-root", help="Merkle root of the ciphertext segments (hex).")
]
Custody = Annotated[str | None, typer.Option(help="owner, supervisor or threshold.")]
Holders = Annotated[
    list[str] | None, typer.Option("--holder", help="Organisation holding the key (repeatable).")
]
PolicyFile = Annotated[
    Path | None, typer.Option("--policy", help="Sharing policy as a YAML file (docs/policies.md).")
]


def hex_digest(text: str, name: str, *, optional: bool = False) -> bytes:
    if optional and not text:
        return b""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        fail(f"{name} must be a SHA-256 digest: 64 hexadecimal digits")
    return value


def report(receipt: Receipt, json_out: bool, message: str, **ids: str) -> None:
    """Print what a submitted transaction did."""
    if json_out:
        emit_json({"tx_id": receipt.tx_id.hex(), "height": receipt.height, **ids})
        return
    extra = "".join(f"\n{k.replace('_', ' ')}: [bold]{v}[/]" for k, v in ids.items())
    console.print(
        f"{message}{extra}\ntransaction {receipt.tx_id.hex()} in block {receipt.height}",
        highlight=False,
    )


def load_policy(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        value = yaml.safe_load(path.read_text())
    except OSError as exc:
        fail(f"cannot read policy file {path}: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        fail(f"policy file {path} is not valid YAML: {exc}")
    try:
        policy_from_mapping(value)
    except PolicyError as exc:
        fail(f"policy file {path}: {exc}")
    return value


def _describe(
    title: str | None,
    description: str | None,
    tags: list[str] | None,
    columns: list[str] | None,
    classification: str | None,
    custody: str | None,
    holders: list[str] | None,
    policy: Path | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    schema = []
    for col in columns or []:
        name, sep, typ = col.partition(":")
        if not sep or not name or not typ:
            fail(f"--column {col!r}: give NAME:TYPE, e.g. patient_id:string")
        schema.append([name, typ])
    for key, value in (
        ("title", title),
        ("description", description),
        ("tags", tags),
        ("schema", schema or None),
        ("classification", classification),
        ("custody", custody),
        ("holders", holders),
        ("policy", load_policy(policy)),
    ):
        if value is not None:
            out[key] = value
    return out


def _content(plain: str, cipher: str, size: int, segment_root: str) -> dict[str, Any]:
    return {
        "plaintext_digest": hex_digest(plain, "--plaintext-digest"),
        "ciphertext_digest": hex_digest(cipher, "--ciphertext-digest"),
        "size": size,
        "segment_root": hex_digest(segment_root, "--segment-root", optional=True),
    }


def register_cmd(
    as_org: AsOrg,
    title: Annotated[str, typer.Option(help="Short name.")],
    plaintext_digest: Plain,
    ciphertext_digest: Cipher,
    size: Size,
    description: Description = None,
    tag: Tags = None,
    column: Columns = None,
    classification: Classification = None,
    segment_root: SegRoot = "",
    custody: Custody = None,
    holder: Holders = None,
    policy: PolicyFile = None,
    masking: MaskingOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Register a dataset: its digests, metadata and sharing policy."""
    payload = _describe(title, description, tag, column, classification, custody, holder, policy)
    payload |= _content(plaintext_digest, ciphertext_digest, size, segment_root)
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        if masking is not None:
            cls = classification or "internal"
            payload["policy"] = masked_policy(chain, payload.get("policy"), cls, masking)
        r = chain.submit(as_org, ds_contract.REGISTER, payload)
    report(r, json_out, f"{as_org} registered {title!r}", dataset=derive_id("dataset", r.tx_id))


def version_cmd(
    dataset: IdArg,
    as_org: AsOrg,
    plaintext_digest: Plain,
    ciphertext_digest: Cipher,
    size: Size,
    title: Title = None,
    description: Description = None,
    tag: Tags = None,
    column: Columns = None,
    classification: Classification = None,
    segment_root: SegRoot = "",
    custody: Custody = None,
    holder: Holders = None,
    policy: PolicyFile = None,
    masking: MaskingOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Register a new version of a dataset (unset metadata is inherited)."""
    payload = _describe(title, description, tag, column, classification, custody, holder, policy)
    payload |= _content(plaintext_digest, ciphertext_digest, size, segment_root)
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        payload["dataset"] = chain.resolve("dataset", dataset)
        if masking is not None:
            current = chain.dataset(payload["dataset"])
            payload["policy"] = masked_policy(
                chain,
                payload.get("policy"),
                classification or current.classification,
                masking,
                inherited=policy_to_value(current.policy),
            )
        r = chain.submit(as_org, ds_contract.VERSION, payload)
    report(r, json_out, "new version registered", dataset=derive_id("dataset", r.tx_id))


def derive_cmd(
    as_org: AsOrg,
    parent: Annotated[list[str], typer.Option("--parent", help="A parent dataset (repeatable).")],
    transformation: Annotated[str, typer.Option(help="How the data was derived.")],
    title: Annotated[str, typer.Option(help="Short name.")],
    plaintext_digest: Plain,
    ciphertext_digest: Cipher,
    size: Size,
    description: Description = None,
    tag: Tags = None,
    column: Columns = None,
    classification: Classification = None,
    segment_root: SegRoot = "",
    custody: Custody = None,
    holder: Holders = None,
    policy: PolicyFile = None,
    masking: MaskingOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Register a dataset derived from parents (its lineage)."""
    payload = _describe(title, description, tag, column, classification, custody, holder, policy)
    payload |= _content(plaintext_digest, ciphertext_digest, size, segment_root)
    payload["transformation"] = transformation
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        payload["parents"] = [chain.resolve("dataset", p) for p in parent]
        if masking is not None:
            cls = classification or "internal"
            payload["policy"] = masked_policy(chain, payload.get("policy"), cls, masking)
        r = chain.submit(as_org, ds_contract.DERIVE, payload)
    report(r, json_out, "derived dataset registered", dataset=derive_id("dataset", r.tx_id))


def retire_cmd(
    dataset: IdArg,
    as_org: AsOrg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Retire a dataset: no new requests; existing grants stay."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        ds = chain.resolve("dataset", dataset)
        r = chain.submit(as_org, ds_contract.RETIRE, {"dataset": ds})
    report(r, json_out, f"dataset {ds} retired", dataset=ds)


def purge_cmd(
    dataset: IdArg,
    as_org: AsOrg,
    reason: Annotated[str, typer.Option(help="Why (kept on the chain).")] = "",
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Purge a dataset: every grant revoked, its keys and blobs destroyed; the record stays."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        ds = chain.resolve("dataset", dataset)
        r = chain.submit(as_org, ds_contract.PURGE, {"dataset": ds, "reason": reason})
        chain.shred(as_org, ds, r.tx_id)  # data plane: every key, share and blob destroyed
    report(r, json_out, f"dataset {ds} purged", dataset=ds)


def list_cmd(
    owner: Annotated[str | None, typer.Option(help="Only this owner's datasets.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only datasets with this tag.")] = None,
    classification: Classification = None,
    text: Annotated[str | None, typer.Option(help="Text in title, description or tags.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include retired, old and purged.")] = False,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """The dataset catalogue, filtered."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        found = chain.catalogue(
            owner=owner,
            tag=tag,
            classification=classification,
            text=text,
            include_inactive=all_,
        )
    if json_out:
        emit_json(to_json(found))
        return
    print_table(
        f"{len(found)} dataset(s)",
        ("id", "owner", "title", "class", "tags", "v", "status"),
        (
            (
                d.id[:12],
                d.owner,
                d.title,
                d.classification,
                ", ".join(d.tags),
                str(d.version),
                d.status,
            )
            for d in found
        ),
    )


def show_cmd(
    dataset: IdArg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """One dataset's record, policy included."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        d = chain.dataset(chain.resolve("dataset", dataset))
    value = to_json(d)
    if json_out:
        emit_json(value)
        return
    table = Table(title=shown(d.title), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, v in value.items():
        text = v if isinstance(v, str) else yaml.safe_dump(v, sort_keys=True).strip()
        table.add_row(name, shown(text))
    console.print(table)


def lineage_cmd(
    dataset: IdArg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """The lineage graph: parents, derived datasets and versions."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        graph = chain.lineage(chain.resolve("dataset", dataset))
    if json_out:
        emit_json(to_json(graph))
        return
    names = {n.id: f"{shown(n.title)} ({n.id[:12]}, v{n.version}, {n.status})" for n in graph.nodes}
    console.print(f"lineage of {names[graph.root]}", highlight=False)
    for a, b, kind in graph.edges:
        console.print(f"  {names[a]} --{kind}--> {names[b]}", highlight=False)
    if not graph.edges:
        console.print("  no parents, derived datasets or other versions", highlight=False)


def _masking_reads(
    dataset: str, target: Target, data_dir: Path | None, as_org: str | None
) -> tuple[list[pq.Transformation], list[pq.Budget]]:
    with open_plane(data_dir, target, as_org) as plane:
        if plane.client is not None:  # the node applies its rule: owner and supervisors
            return plane.client.transformations(dataset), plane.client.budgets(dataset)
        assert plane.embedded is not None
        ds, store = plane.resolve("dataset", dataset), plane.embedded.store
        return pq.transformations(store, ds), pq.budgets(store, ds)


def budgets_cmd(
    dataset: IdArg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """Masked releases made from a dataset and the privacy budget (epsilon) spent per grantee."""
    releases, found = _masking_reads(dataset, Target(node, network, key), data_dir, as_org)
    if json_out:
        emit_json({"releases": to_json(releases), "budgets": to_json(found)})
        return
    print_table(
        f"{len(releases)} masked release(s)",
        ("grant", "masked dataset", "profile", "k", "l", "rows", "suppressed", "epsilon"),
        (
            (t.grant[:12], t.dataset[:12], t.profile.hex()[:16], *map(str, figures), t.epsilon)
            for t in releases
            for figures in [(t.k, t.l, t.rows, t.suppressed)]
        ),
    )
    print_table(
        f"privacy budget of {len(found)} grantee(s)",
        ("grantee", "spent", "limit", "left"),
        ((b.grantee, b.spent, b.limit or "unlimited", b.left or "unlimited") for b in found),
    )


def register(app: typer.Typer) -> None:
    group = command_group("dataset", "Datasets: register, version, derive, retire, list, show.")
    group.command("register")(register_cmd)
    group.command("version")(version_cmd)
    group.command("derive")(derive_cmd)
    group.command("retire")(retire_cmd)
    group.command("purge")(purge_cmd)
    group.command("list")(list_cmd)
    group.command("show")(show_cmd)
    group.command("lineage")(lineage_cmd)
    group.command("budgets")(budgets_cmd)
    app.add_typer(group)
