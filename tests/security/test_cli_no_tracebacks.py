"""Low: bad input or a dead peer ends a command with one clear line, never a traceback.

Each case runs the command line (in this process with `CliRunner`, or as a real
process where the input could hang it, such as `/dev/zero`) and expects exit
code 1 or 2, exactly one `error:` line, and no "Traceback". The root command
(`cli.main`) turns whatever escapes a command into such a line; publishing
refuses anything but a regular file before reading it (`sharing.publish`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sharing"))

from plane_sides import ORGS

from sharechain.cli.main import app
from sharechain.contracts.access import APPROVE, REQUEST
from sharechain.ordering.etcd_process import free_ports
from sharechain.sharing.plane import Plane
from sharechain.sharing.records import Listing, derive_id
from sharechain.storage.datadir import init_consortium

DEAD = f"http://127.0.0.1:{free_ports(1)[0]}"


@dataclass(frozen=True)
class World:
    home: Path
    dataset: str
    grant: str
    tmp: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("cli-errors")
    home = tmp / "c"
    init_consortium(home, ORGS)
    src = tmp / "records.csv"
    src.write_text("id,value\n1,2\n")
    with Plane.local(home) as plane:
        ds = plane.publish("hospital-a", src, Listing(title="records")).dataset
        body = {"dataset": ds, "purpose": "research", "duration": 86_400_000}
        rid = derive_id("request", plane.submit("insurer", REQUEST, body).tx_id)
        plane.submit("hospital-a", APPROVE, {"request": rid})
        gid = derive_id("grant", plane.submit("regulator", APPROVE, {"request": rid}).tx_id)
    (tmp / "a-directory").mkdir()
    net = tmp / "net"
    net.mkdir()
    nodes = [{"org": o.id, "url": DEAD} for o in ORGS]
    body2 = {"state": "up", "dir": str(net), "ordering": "solo", "consortium_dir": str(home)}
    (net / "network.json").write_text(json.dumps({**body2, "nodes": nodes}))
    (tmp / "garbage.json").write_text("not json")
    return World(home, ds, gid, tmp)


Args = Callable[[World], list[str]]
D = "--data-dir"

CASES: dict[str, Args] = {
    "network status, every node down": lambda w: ["network", "status", "--dir", str(w.tmp / "net")],
    "a node that does not answer": lambda w: [
        "dataset", "list", "--node", DEAD, "--key", str(w.home / "keys" / "insurer.key")
    ],
    "a network file of garbage": lambda w: [
        "dataset", "list", "--network", str(w.tmp / "garbage.json"), "--as", "insurer"
    ],
    "a huge --days": lambda w: [
        "request", "create", w.dataset, "--as", "insurer", "--purpose", "research",
        "--days", "9" * 40, D, str(w.home),
    ],
    "a negative --days": lambda w: [
        "request", "create", w.dataset, "--as", "insurer", "--purpose", "research",
        "--days", "-3", D, str(w.home),
    ],
    "publishing a file that does not exist": lambda w: [
        "dataset", "publish", str(w.tmp / "missing.csv"), "--as", "hospital-a", "--title", "x",
        D, str(w.home),
    ],
    "publishing a directory": lambda w: [
        "dataset", "publish", str(w.tmp / "a-directory"), "--as", "hospital-a", "--title", "x",
        D, str(w.home),
    ],
    "a bad dataset id": lambda w: ["dataset", "show", "not-an-id", D, str(w.home)],
    "an unknown grant id": lambda w: [
        "grant", "revoke", "ab" * 32, "--as", "hospital-a", D, str(w.home)
    ],
    "fetching into a directory that does not exist": lambda w: [
        "fetch", w.grant, "--as", "insurer", "-o", str(w.tmp / "no" / "such" / "dir" / "f"),
        D, str(w.home),
    ],
    "an organisation id that is not a slug": lambda w: [
        "init", D, str(w.tmp / "c2"), "--member", "Not_A_Slug", "--supervisor", "regulator"
    ],
    "an unknown organisation": lambda w: [
        "request", "create", w.dataset, "--as", "nobody", "--purpose", "research", D, str(w.home)
    ],
}  # fmt: skip


def _check(code: int, output: str) -> None:
    assert code in (1, 2), output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    usage = output.startswith("Usage:") and output.count("─ Error ─") == 1  # the parser's own
    assert len(errors) == 1 or usage, output


@pytest.mark.parametrize("case", CASES)
def test_bad_input_or_a_dead_peer_is_one_line(world: World, case: str) -> None:
    result = CliRunner().invoke(app, CASES[case](world))
    _check(result.exit_code, result.output)


def test_an_unreadable_file_is_one_line(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    target = world.tmp / "secret.csv"
    target.write_text("id\n1\n")
    target.chmod(0)
    real = Path.open

    def refusing(self: Path, *args: object, **kwargs: object) -> object:
        if self == target:  # root reads a mode-0 file anyway: refuse as the kernel would
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", refusing)
    args = ["dataset", "publish", str(target), "--as", "hospital-a", "--title", "x"]
    result = CliRunner().invoke(app, [*args, D, str(world.home)])
    _check(result.exit_code, result.output)
    assert "Permission denied" in result.output


def _real(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from sharechain.cli.main import main; main()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_publishing_an_endless_device_is_refused_at_once(world: World, device: str) -> None:
    done = _real(
        "dataset", "publish", device, "--as", "hospital-a", "--title", "x", D, str(world.home)
    )  # fmt: skip
    _check(done.returncode, done.stdout + done.stderr)
    assert "not a regular file" in done.stderr


def test_network_status_with_its_nodes_down_in_a_real_process(world: World) -> None:
    done = _real("network", "status", "--dir", str(world.tmp / "net"))
    _check(done.returncode, done.stdout + done.stderr)
    assert "did not answer" in done.stderr
