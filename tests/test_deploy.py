"""deploy/: the dashboard and alerts name real metrics; the units call real commands and flags."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from sharechain.cli.main import app
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_process import EtcdCluster
from sharechain.storage.datadir import OrgSpec, init_consortium

DEPLOY = Path(__file__).parent.parent / "deploy"
SYSTEMD = DEPLOY / "systemd"
_METRIC = re.compile(r"\b((?:sharechain|etcd)_[a-z0-9_]+)")


def _exposed(text: str) -> set[str]:
    """Every series name a /metrics page can carry, from its `# TYPE` lines."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path_factory.mktemp("etcd"), members=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def node_metrics(
    tmp_path_factory: pytest.TempPathFactory, etcd_cluster: EtcdCluster
) -> Iterator[set[str]]:
    """What a running etcd-mode node exports at /metrics (its registry, its upkeep's,
    its compaction loop's)."""
    base = tmp_path_factory.mktemp("deploy")
    init_consortium(base / "c", (OrgSpec("hospital-a", ("member", "admin")),))
    node = Node(
        NodeConfig(
            data_dir=node_data_dir(base / "c", base / "n", "hospital-a"),
            org="hospital-a",
            ordering="etcd",
            etcd_endpoints=etcd_cluster.endpoints,
        )
    )
    node.start()
    server = ServerThread(node).start()
    try:
        yield _exposed(httpx.get(server.url + "/metrics", timeout=10).text)
    finally:
        server.stop()
        node.stop()


@pytest.fixture(scope="module")
def etcd_metrics(etcd_cluster: EtcdCluster) -> set[str]:
    return _exposed(httpx.get(etcd_cluster.endpoints[0] + "/metrics", timeout=10).text)


def _referenced(text: str) -> set[str]:
    return set(_METRIC.findall(text))


def _dashboard_exprs() -> str:
    body = json.loads((DEPLOY / "grafana" / "sharechain-dashboard.json").read_text())
    return "\n".join(t["expr"] for p in body["panels"] for t in p["targets"])


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_monitoring_names_only_exported_metrics(
    source: str, node_metrics: set[str], etcd_metrics: set[str]
) -> None:
    text = (
        _dashboard_exprs()
        if source == "dashboard"
        else (DEPLOY / "sharechain-alerts.yml").read_text()
    )
    used = _referenced(text)
    assert {m for m in used if m.startswith("sharechain_")} >= {
        "sharechain_ready",
        "sharechain_block_height",
    }
    assert used - node_metrics - etcd_metrics == set()


def test_the_check_catches_an_unknown_metric(node_metrics: set[str]) -> None:
    assert "sharechain_block_height" in node_metrics
    assert "sharechain_blocks_appended_total" in node_metrics
    assert _referenced("rate(sharechain_made_up_total[5m])") - node_metrics == {
        "sharechain_made_up_total"
    }


def _exec_start(unit: Path) -> list[str]:
    text = unit.read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart="))
    if argv[:2] == ["/bin/sh", "-c"]:
        argv = shlex.split(argv[2].removeprefix("exec "))
    return argv


def _sharechain_options(argv: list[str]) -> tuple[Any, list[str]]:
    """The click command `argv` names (after the executable) and the options it passes."""
    # Typer's click objects, whatever click module it bundles: duck-typed.
    command: Any = typer.main.get_command(app)
    words = argv[1:]
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        sub = command.commands.get(words.pop(0))
        assert sub is not None, f"no such command in {argv}"
        command = sub
    return command, [w for w in words if w.startswith("--")]


@pytest.mark.parametrize(
    "unit",
    ["sharechain-node.service", "sharechain-backup.service", "sharechain-etcd-revoke.service"],
)
def test_node_units_use_existing_commands_and_options(unit: str) -> None:
    argv = _exec_start(SYSTEMD / unit)
    assert argv[0].endswith("/sharechain")
    command, options = _sharechain_options(argv)
    known = {o for p in command.params for o in p.opts}
    assert options and set(options) <= known, set(options) - known
    if unit == "sharechain-node.service":
        assert "--peer" in known  # what $SHARECHAIN_PEERS expands to


def test_a_made_up_option_is_caught() -> None:
    command, options = _sharechain_options(["sharechain", "node", "start", "--made-up"])
    assert options == ["--made-up"]
    assert "--made-up" not in {o for p in command.params for o in p.opts}


def test_etcd_unit_uses_flags_etcd_documents() -> None:
    etcd = shutil.which("etcd")
    assert etcd is not None, "install etcd-server (`make system`)"
    help_run = subprocess.run([etcd, "--help"], capture_output=True, text=True, check=False)
    documented = set(re.findall(r"^\s+(--[a-z-]+)", help_run.stdout + help_run.stderr, re.M))
    assert "--peer-cert-file" in documented
    argv = _exec_start(SYSTEMD / "etcd-member.service")
    flags = {a for a in argv if a.startswith("--")}
    assert {"--cert-file", "--peer-client-cert-auth", "--trusted-ca-file"} <= flags
    assert flags <= documented, flags - documented
