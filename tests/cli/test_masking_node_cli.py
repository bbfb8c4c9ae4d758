"""`--masking P` and `--policy FILE` against running nodes (`--node URL`, `--network FILE`).

Two nodes serve their API on 127.0.0.1 in this process: hospital-a orders
(solo) and owns the data, bank-b is the grantee. On the nodes a profile is
named by its full digest (names and prefixes are looked up on an embedded
chain only, and the error says so); `--policy FILE` carries the policy that
`--masking` adds the profile to (without it, the consortium's default policy:
`tests/cli/test_defpolicy_node_cli.py`); `dataset version --masking` keeps the
dataset's current policy. The owner's node masks by itself, so the
grantee fetches the masked bytes only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from masking_home import PROFILE
from test_remote_cli import ORGS, js, run, sha, wait_until

from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_process import free_ports
from sharechain.storage.datadir import init_consortium

OWNER, GRANTEE = "hospital-a", "bank-b"
POLICY = "approval: {any: 1, of: [hospital-a]}\n"


@dataclass
class Net:
    source: Path
    urls: dict[str, str]
    nodes: dict[str, Node]
    base: Path

    def sync(self) -> None:
        head = self.nodes[OWNER].ledger.height
        wait_until(lambda: all(n.ledger.height >= head for n in self.nodes.values()))

    def at(self, org: str) -> tuple[str | Path, ...]:
        return ("-d", self.source, "--node", self.urls[org])


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("masking-node")
    source = base / "consortium"
    init_consortium(source, ORGS, consortium="test")
    orgs = (OWNER, GRANTEE)
    dirs = {o: node_data_dir(source, base / "nodes" / o, o) for o in orgs}
    ports = dict(zip(orgs, free_ports(2), strict=True))
    urls = {o: f"http://127.0.0.1:{p}" for o, p in ports.items()}
    nodes: dict[str, Node] = {}
    servers: dict[str, ServerThread] = {}
    try:
        for org in orgs:
            config = NodeConfig(
                data_dir=dirs[org],
                org=org,
                orderer_url=None if org == OWNER else urls[OWNER],
                peers=tuple((o, u) for o, u in urls.items() if o != org),
                poll_interval=0.2,
                max_wait=0.005,
            )
            nodes[org] = Node(config)
            nodes[org].start()
            servers[org] = ServerThread(nodes[org], ports[org]).start()
        yield Net(source, urls, nodes, base)
    finally:
        for node in nodes.values():  # told at once: their last waits overlap
            node.stop_event.set()
        for org in reversed(list(servers)):
            servers[org].stop()
            nodes[org].stop()


@pytest.fixture(scope="module")
def digest(net: Net) -> str:
    profile = net.base / "ages.yaml"
    profile.write_text(PROFILE)
    registered = js("profile", "register", profile, "--as", OWNER, *net.at(OWNER))
    return str(registered["digest"])


def _files(tmp_path: Path) -> tuple[Path, Path]:
    table = tmp_path / "patients.csv"
    table.write_text("patient_id,age\n" + "".join(f"P{i},{30 + i % 20}\n" for i in range(40)))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return table, policy


def _publish(net: Net, table: Path, *extra: str | Path) -> str:
    pub = js("dataset", "publish", table, "--as", OWNER, "--title", "patients",
             "--classification", "confidential", *extra, *net.at(OWNER))  # fmt: skip
    net.sync()
    return str(pub["dataset"])


def _masking_of(net: Net, ds: str) -> dict[str, str]:
    shown = js("dataset", "show", ds, "--as", GRANTEE, *net.at(GRANTEE))
    masking: dict[str, str] = shown["policy"]["masking"]
    return masking


def _fetch_masked(net: Net, gid: str, out: Path) -> str:
    """The grantee's fetch, once the owner's node has made the masked version."""

    def made() -> bool:
        shown = js("request", "list", "--as", GRANTEE, "--mine", *net.at(GRANTEE))
        mine = [r for r in shown if r.get("grant") == gid]
        if not mine:
            return False
        state = js("request", "show", mine[0]["id"], "--as", GRANTEE, *net.at(GRANTEE))["masking"]
        return str(state).startswith("masked version")

    wait_until(made, timeout=30)
    js("fetch", gid, "--as", GRANTEE, "-o", out, *net.at(GRANTEE))
    return out.read_text()


def test_publish_with_policy_and_masking_digest(net: Net, digest: str, tmp_path: Path) -> None:
    table, policy = _files(tmp_path)
    ds = _publish(net, table, "--policy", policy, "--masking", digest)
    assert _masking_of(net, ds) == {"confidential": digest}
    req = js("request", "create", ds[:12], "--as", GRANTEE, "--purpose", "research",
             *net.at(GRANTEE))  # fmt: skip
    approved = js("request", "approve", req["request"], "--as", OWNER, *net.at(OWNER))
    assert approved["status"] == "granted"
    net.sync()
    shown = js("request", "show", req["request"], "--as", GRANTEE, *net.at(GRANTEE))
    assert shown["masking_profile"] == digest
    released = _fetch_masked(net, approved["grant"], tmp_path / "out.csv")
    assert "P1," not in released and "30-39" in released and released != table.read_text()


def test_request_with_masking_digest_on_the_nodes(net: Net, digest: str, tmp_path: Path) -> None:
    table, policy = _files(tmp_path)
    ds = _publish(net, table, "--policy", policy)  # the policy names no masking
    assert _masking_of(net, ds) == {}
    req = js("request", "create", ds, "--as", GRANTEE, "--purpose", "research",
             "--masking", digest.upper(), *net.at(GRANTEE))  # fmt: skip
    approved = js("request", "approve", req["request"], "--as", OWNER, *net.at(OWNER))
    net.sync()
    assert (
        js("request", "show", req["request"], "--as", OWNER, *net.at(OWNER))["masking_profile"]
        == digest
    )
    released = _fetch_masked(net, approved["grant"], tmp_path / "out.csv")
    assert "P1," not in released and "30-39" in released


def test_register_and_version_with_masking_on_the_nodes(
    net: Net, digest: str, tmp_path: Path
) -> None:
    _, policy = _files(tmp_path)
    a = net.at(OWNER)
    reg = js("dataset", "register", "--as", OWNER, "--title", "labs", "--plaintext-digest",
             sha("p1"), "--ciphertext-digest", sha("c1"), "--size", "10", "--classification",
             "secret", "--policy", policy, "--masking", digest, *a)  # fmt: skip
    ds = reg["dataset"]
    net.sync()
    assert _masking_of(net, ds) == {"secret": digest}
    # A new version without --policy keeps the current policy and its approval rule.
    ver = js("dataset", "version", ds, "--as", OWNER, "--plaintext-digest", sha("p2"),
             "--ciphertext-digest", sha("c2"), "--size", "11", "--classification", "internal",
             "--masking", digest, *a)  # fmt: skip
    net.sync()
    shown = js("dataset", "show", ver["dataset"], "--as", GRANTEE, *net.at(GRANTEE))
    assert shown["policy"]["masking"] == {"secret": digest, "internal": digest}
    assert shown["policy"]["approval"] == {"any": 1, "of": [OWNER]}


def test_masking_errors_on_the_nodes_are_clear(net: Net, digest: str, tmp_path: Path) -> None:
    table, policy = _files(tmp_path)
    a = net.at(OWNER)
    by_name = run("dataset", "publish", table, "--as", OWNER, "--title", "t",
                  "--policy", policy, "--masking", "ages", *a, code=2)  # fmt: skip
    assert "on the nodes give the profile's full digest" in by_name
    ds = _publish(net, table, "--policy", policy)
    by_prefix = run("request", "create", ds, "--as", GRANTEE, "--purpose", "x",
                    "--masking", digest[:12], *net.at(GRANTEE), code=2)  # fmt: skip
    assert f"--masking {digest[:12]!r}: on the nodes give the profile's full digest" in by_prefix
    unknown = run("dataset", "publish", table, "--as", OWNER, "--title", "t",
                  "--policy", policy, "--masking", "cd" * 32, *a, code=2)  # fmt: skip
    assert "not registered" in unknown
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_use: 3\n")
    refused = run("dataset", "publish", table, "--as", OWNER, "--title", "t",
                  "--policy", bad, "--masking", digest, *a, code=2)  # fmt: skip
    assert "policy file" in refused and "max_use" in refused
