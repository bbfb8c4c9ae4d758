"""`--masking P` without `--policy FILE` on the nodes: the consortium's default policy.

The consortium's genesis sets a default policy of its own (one approver,
fixed purposes, a use limit), so a command that fell back to anything else
would show. One node (hospital-a, ordering solo) serves its API on
127.0.0.1 in this process; the same commands run embedded on the
consortium's own data directory, and both put the same policy on the chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from masking_home import PROFILE
from test_remote_cli import ORGS, js, run, sha

from sharechain.api.client import NodeClient
from sharechain.api.policy_routes import DEFAULT_POLICY_PATH, default_policy
from sharechain.contracts import queries
from sharechain.contracts.policies import policy_from_mapping, policy_to_value
from sharechain.crypto.keyfile import load_keys
from sharechain.errors import ConfigError
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import init_consortium

OWNER = "hospital-a"
DEFAULT = {
    "approval": {"any": 1, "of": [OWNER]},
    "purposes": ["research", "audit"],
    "max_uses": 3,
}


@dataclass
class One:
    source: Path
    """The consortium directory: every key, and an embedded chain of its own."""
    url: str
    node: Node
    server: ServerThread
    base: Path

    def at(self) -> tuple[str | Path, ...]:
        return ("-d", self.source, "--node", self.url)

    def embedded(self) -> tuple[str | Path, ...]:
        return ("-d", self.source)


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[One]:
    base = tmp_path_factory.mktemp("defpolicy-node")
    source = base / "consortium"
    init_consortium(source, ORGS, consortium="test", governance={"default_policy": DEFAULT})
    data = node_data_dir(source, base / "node", OWNER)
    node = Node(NodeConfig(data_dir=data, org=OWNER, max_wait=0.005))
    node.start()
    server = ServerThread(node).start()
    try:
        yield One(source, server.url, node, server, base)
    finally:
        server.stop()
        node.stop()


@pytest.fixture(scope="module")
def digest(one: One) -> str:
    """The profile's digest, registered on the node and on the embedded chain alike."""
    profile = one.base / "ages.yaml"
    profile.write_text(PROFILE)
    on_node = js("profile", "register", profile, "--as", OWNER, *one.at())
    embedded = js("profile", "register", profile, "--as", OWNER, *one.embedded())
    assert on_node["digest"] == embedded["digest"]
    return str(on_node["digest"])


def _table(tmp_path: Path) -> Path:
    table = tmp_path / "patients.csv"
    table.write_text("patient_id,age\n" + "".join(f"P{i},{30 + i % 20}\n" for i in range(40)))
    return table


def _policy(where: tuple[str | Path, ...], ds: str) -> dict[str, Any]:
    policy: dict[str, Any] = js("dataset", "show", ds, "--as", OWNER, *where)["policy"]
    return policy


def _expected(masking: dict[str, str]) -> dict[str, Any]:
    """The default policy's canonical map with `masking` set, as the chain stores it."""
    return policy_to_value(policy_from_mapping({**DEFAULT, "masking": masking}))


def test_publish_with_masking_and_no_policy_matches_embedded(
    one: One, digest: str, tmp_path: Path
) -> None:
    table = _table(tmp_path)
    opts = ("--as", OWNER, "--title", "patients", "--classification", "confidential",
            "--masking", digest)  # fmt: skip
    on_node = js("dataset", "publish", table, *opts, *one.at())["dataset"]
    embedded = js("dataset", "publish", table, *opts, *one.embedded())["dataset"]
    node_policy = _policy(one.at(), on_node)
    assert node_policy == _policy(one.embedded(), embedded)
    assert node_policy == _expected({"confidential": digest})
    assert node_policy["approval"] == {"any": 1, "of": [OWNER]} and node_policy["max_uses"] == 3


def _on_node(one: One, ds: str) -> dict[str, Any]:
    """A dataset's policy as the node's own state holds it (no command line round trip)."""
    return policy_to_value(queries.dataset(one.node.store, ds).policy)


def test_register_and_derive_with_masking_and_no_policy(one: One, digest: str) -> None:
    reg = js("dataset", "register", "--as", OWNER, "--title", "labs", "--plaintext-digest",
             sha("p1"), "--ciphertext-digest", sha("c-defpolicy-1"), "--size", "10",
             "--classification", "secret", "--masking", digest.upper(), *one.at())  # fmt: skip
    assert _on_node(one, reg["dataset"]) == _expected({"secret": digest})
    der = js("dataset", "derive", "--as", OWNER, "--parent", reg["dataset"], "--transformation",
             "cleaned", "--title", "labs clean", "--plaintext-digest", sha("p2"),
             "--ciphertext-digest", sha("c-defpolicy-2"), "--size", "9", "--masking", digest,
             *one.at())  # fmt: skip
    assert _on_node(one, der["dataset"]) == _expected({"internal": digest})


def test_unknown_digest_without_policy_is_a_clear_error(one: One, tmp_path: Path) -> None:
    # (a name or a prefix on the nodes: tests/cli/test_masking_node_cli.py)
    unknown = run("dataset", "publish", _table(tmp_path), "--as", OWNER, "--title", "t",
                  "--masking", "cd" * 32, *one.at(), code=2)  # fmt: skip
    assert "not registered" in unknown and "cd" * 32 in unknown
    assert "profile register" in unknown


def test_the_route_answers_signed_callers_only(one: One) -> None:
    keys = load_keys(one.source / "keys" / "bank-b.key")  # any member reads it
    with NodeClient(one.url, keys.org, keys.signing) as client:
        assert client.default_policy() == policy_from_mapping(DEFAULT)
        body = client.get_json("/v1/policies/default")
    assert body["configured"] is True
    assert body["policy"]["approval"] == {"mode": "k-of-n", "k": 1, "of": [OWNER]}
    unsigned = httpx.get(f"{one.url}/v1/policies/default")
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "unauthenticated"


def test_the_route_is_in_the_openapi_document(one: One) -> None:
    doc = httpx.get(f"{one.url}/openapi.json").json()
    op = doc["paths"]["/v1/policies/default"]["get"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/DefaultPolicyReply"}
    reply = doc["components"]["schemas"]["DefaultPolicyReply"]
    assert set(reply["required"]) == {"policy", "configured"}
    assert reply["properties"]["policy"] == {"$ref": "#/components/schemas/Policy"}
    assert "masking" in doc["components"]["schemas"]["Policy"]["properties"]
    assert {"401", "403", "503"} <= set(op["responses"])


def test_a_default_that_does_not_parse_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "consortium"
    init_consortium(
        source, ORGS, consortium="test", governance={"default_policy": {"max_uses": -1}}
    )
    emb = Embedded(source)
    try:
        with pytest.raises(ConfigError, match="default_policy does not parse: max_uses must be"):
            default_policy(emb.store)
    finally:
        emb.close()


def test_a_node_without_the_route_is_a_clear_error(one: One, digest: str, tmp_path: Path) -> None:
    routes = one.server.app.router.routes
    at = next(i for i, r in enumerate(routes) if getattr(r, "path", "") == DEFAULT_POLICY_PATH)
    route = routes.pop(at)  # the node as it was before the route
    try:
        older = run("dataset", "publish", _table(tmp_path), "--as", OWNER, "--title", "t",
                    "--masking", digest, *one.at(), code=2)  # fmt: skip
    finally:
        routes.insert(at, route)
    assert f"the node at {one.url} does not serve the consortium's default policy" in older
    assert "--policy FILE" in older
