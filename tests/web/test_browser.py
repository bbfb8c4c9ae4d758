"""The console in a real browser (Debian's chromium through Playwright) on a 3-node network.

hospital-a orders (solo) and owns the data, bank-b asks for it, the regulator
supervises. Operators are added with `sharechain ui user add`; datasets,
requests and fetches go through the command line against the nodes; the
decisions are taken in the consoles, with the keyboard alone for one of them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from web_kit import GRANTEE, ORGS, OWNER, PASSWORD, SUPERVISOR, XSS

from sharechain.cli.main import app as cli
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_process import free_ports
from sharechain.storage.datadir import init_consortium
from sharechain.web import mount

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
runner = CliRunner()


def run(*args: str | Path, stdin: str | None = None, code: int = 0) -> str:
    result = runner.invoke(cli, [str(a) for a in args], input=stdin)
    out = result.stdout + result.stderr
    assert result.exit_code == code, out
    return result.stdout


def js(*args: str | Path) -> Any:
    return json.loads(run(*args, "--json"))


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@dataclass
class Net:
    source: Path
    urls: dict[str, str]
    nodes: dict[str, Node]
    dirs: dict[str, Path]

    def on(self, org: str) -> tuple[str, ...]:
        return ("-d", str(self.source), "--node", self.urls[org], "--as", org)

    def sync(self) -> None:
        head = self.nodes[OWNER].ledger.height
        wait_until(lambda: all(n.ledger.height >= head for n in self.nodes.values()))


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("console-net")
    source = base / "consortium"
    init_consortium(source, ORGS, consortium="test")
    orgs = (OWNER, GRANTEE, SUPERVISOR)
    dirs = {o: node_data_dir(source, base / "nodes" / o, o) for o in orgs}
    ports = dict(zip(orgs, free_ports(3), strict=True))
    urls = {o: f"http://127.0.0.1:{p}" for o, p in ports.items()}
    nodes: dict[str, Node] = {}
    servers: list[ServerThread] = []
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
            servers.append(ServerThread(nodes[org], ports[org], (mount,)).start())
        # Operators, added on each node's data directory with the command line.
        for org, name, role in (
            (OWNER, "anna", "approver"),
            (OWNER, "vera", "viewer"),
            (SUPERVISOR, "rita", "approver"),
        ):
            out = run(
                "ui",
                "user",
                "add",
                name,
                "--role",
                role,
                "--password-stdin",
                "-d",
                dirs[org],
                stdin=PASSWORD + "\n",
            )
            assert f"operator {name} added as {role}" in out
        yield Net(source, urls, nodes, dirs)
    finally:
        for node in nodes.values():  # told at once: their last waits overlap
            node.stop_event.set()
        for server, node in zip(reversed(servers), reversed(list(nodes.values())), strict=True):
            server.stop()
            node.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class Console:
    """A browser tab on one node's console, failing the test on any CSP violation or dialog."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(base_url=url)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.problems: list[str] = []
        self.page.on("dialog", lambda d: (self.problems.append(f"dialog {d.message}"), d.dismiss()))
        self.page.on(
            "console",
            lambda m: self.problems.append(m.text) if "Content Security Policy" in m.text else None,
        )

    def login(self, name: str) -> None:
        self.page.goto("/ui/inbox")
        assert "/ui/login" in self.page.url  # nothing but the login page without a session
        self.page.get_by_label("Name").fill(name)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url("**/ui/inbox")

    def close(self) -> None:
        self.context.close()
        assert self.problems == []


def _publish(net: Net, tmp: Path, title: str) -> str:
    src = tmp / f"{abs(hash(title))}.csv"
    src.write_bytes(b"patient_id,value\n" + os.urandom(4000))
    pub = js("dataset", "publish", src, "--title", title, "--custody", "owner", *net.on(OWNER))
    net.sync()
    return str(pub["dataset"])


def test_the_whole_story_in_the_browser(net: Net, chromium: Any, tmp_path: Path) -> None:
    anna = Console(chromium, net.urls[OWNER])
    anna.login("anna")
    page = anna.page

    # A dataset registered from the command line appears; the catalogue searches as one types.
    ds = _publish(net, tmp_path, "Ward admissions 2025")
    page.goto("/ui/datasets")
    results = page.locator("#results")
    page.get_by_label("Search").fill("no such data")  # htmx swaps the results as one types
    results.get_by_text("0 dataset(s)").wait_for()
    page.get_by_label("Search").fill("admissions")
    results.get_by_text("1 dataset(s)").wait_for()
    assert "text=admissions" in page.url
    assert results.get_by_role("link", name="Ward admissions 2025").is_visible()

    # bank-b asks; hospital-a's approver approves with the keyboard alone.
    req = js("request", "create", ds[:12], "--purpose", "research", *net.on(GRANTEE))
    net.sync()
    page.goto("/ui/inbox")
    approve = page.get_by_role("button", name="Approve")
    for _ in range(40):  # Tab through the page until the Approve button has the focus
        page.keyboard.press("Tab")
        if approve.evaluate("b => b === document.activeElement"):
            break
    else:
        pytest.fail("the Approve button cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.get_by_role("status").get_by_text("approve request").wait_for()
    assert "done" in page.get_by_role("status").inner_text()

    # The regulator's approver completes the joint approval in the regulator's console.
    rita = Console(chromium, net.urls[SUPERVISOR])
    wait_until(lambda: net.nodes[SUPERVISOR].ledger.height >= net.nodes[OWNER].ledger.height)
    rita.login("rita")
    rita.page.locator(f"#request-{req['request']}").get_by_role("button", name="Approve").click()
    rita.page.get_by_role("status").get_by_text("done").wait_for()
    rita.close()
    net.sync()
    # The audit trail through the API and the command line names the operators.
    approvals = [e for e in js("audit", ds[:12], *net.on(OWNER)) if e["type"] == "access.approve"]
    assert [(e["sender"], e["operator"]) for e in approvals] == [
        (OWNER, "anna"),
        (SUPERVISOR, "rita"),
    ]

    # bank-b fetches: the key release and the read receipt arrive on the timeline.
    grant = js("grant", "list", "--org", GRANTEE, *net.on(GRANTEE))[0]["id"]
    js("fetch", grant, "-o", tmp_path / "got.csv", *net.on(GRANTEE))
    net.sync()
    page.goto(f"/ui/datasets/{ds}")
    trail = page.locator("ol.trail")
    for text in ("grant.key-release", "grant.read", "access.approve", "by hospital-a (anna)"):
        assert text in trail.inner_text()
    assert page.locator("figure.timeline svg circle").count() >= 5

    # Revoke from the dataset page; the grantee's next fetch is refused.
    page.get_by_label(f"reason for revoking grant {grant[:12]}").fill("study over")
    page.get_by_role("button", name="Revoke").click()
    page.get_by_role("status").get_by_text("revoke grant").wait_for()
    assert page.locator("td.status-revoked").inner_text() == "revoked"
    net.sync()
    late = runner.invoke(cli, ["fetch", grant, "-o", str(tmp_path / "late.csv"), *net.on(GRANTEE)])
    assert late.exit_code != 0 and "revoked" in late.stdout + late.stderr
    page.reload()
    assert "grant.revoke" in trail.inner_text()
    anna.close()


def test_viewer_forgeries_and_hostile_titles(net: Net, chromium: Any, tmp_path: Path) -> None:
    ds = _publish(net, tmp_path, XSS)
    js("request", "create", ds[:12], "--purpose", "research", *net.on(GRANTEE))
    net.sync()
    vera = Console(chromium, net.urls[OWNER])
    vera.login("vera")
    page = vera.page
    assert page.get_by_role("button", name="Approve").count() == 0
    assert page.get_by_role("button", name="Deny").count() == 0
    # The hostile title is shown as text; no dialog opened (Console.close checks).
    page.goto("/ui/datasets")
    assert page.get_by_role("link", name=XSS).is_visible()
    page.goto(f"/ui/datasets/{ds}")
    assert page.get_by_role("heading", name=XSS).is_visible()

    # A forged POST with this viewer's valid CSRF token: refused by the server's role check.
    token = page.locator('input[name="csrf"]').first.get_attribute("value")
    rid = _open_request(net)
    forged = page.request.post(f"/ui/requests/{rid}/approve", form={"csrf": token})
    assert forged.status == 403 and "needs the role" in forged.text()
    vera.close()

    # An approver's form posted without its CSRF token: refused too.
    anna = Console(chromium, net.urls[OWNER])
    anna.login("anna")
    bare = anna.page.request.post(f"/ui/requests/{rid}/approve", form={})
    assert bare.status == 403 and "CSRF token" in bare.text()
    from sharechain.contracts import queries as q

    assert q.request(net.nodes[OWNER].store, rid).approvals == ()
    anna.close()


def tab_to(page: Any, target: Any, presses: int = 60) -> None:
    """Press Tab until `target` has the focus (fails if it never gets it)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if target.evaluate("e => e === document.activeElement"):
            return
    pytest.fail("the element cannot be reached with Tab")


def _signed(net: Net, org: str, type: str, payload: dict[str, Any]) -> bytes:
    from sharechain.ledger.transactions import sign_transaction
    from sharechain.storage.datadir import DataDir

    stx = sign_transaction(DataDir.open(net.source).keys(org).signing, type, org, payload)
    (future,) = net.nodes[OWNER].submit([stx.raw])
    receipt = future.result(timeout=20)
    assert receipt.code == "valid", receipt.reason
    return bytes(receipt.tx_id)


def test_privacy_and_checkpoints_with_the_keyboard_alone(net: Net, chromium: Any) -> None:
    from sharechain.contracts import derive_id

    psi = {
        "kind": "psi",
        "parties": [OWNER, GRANTEE],
        "purpose": "blacklist match",
        "max_set_size": 100,
        "duration": 3_600_000,
    }
    sid = derive_id("computation", _signed(net, OWNER, "computation.propose", psi))
    _signed(net, GRANTEE, "computation.accept", {"session": sid})
    net.sync()
    anna = Console(chromium, net.urls[OWNER])
    anna.login("anna")
    page = anna.page
    tab_to(page, page.get_by_role("link", name="Privacy"))
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/privacy")
    row = page.locator(f"#session-{sid}")
    assert "waiting for a supervisor" in row.inner_text() and "2 of 2" in row.inner_text()
    tab_to(page, row.get_by_role("link"))
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/ui/privacy/sessions/{sid}")
    assert "computation.accept" in page.locator("ol.trail").inner_text()
    assert page.locator("figure.timeline svg circle").count() >= 2

    tab_to(page, page.get_by_role("link", name="Checkpoints"))
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/checkpoints")
    assert "quorum 2: verified" in page.locator("main").inner_text()
    assert page.locator("pre.note").inner_text().startswith("sharechain/")
    older = page.get_by_label("Older size")
    tab_to(page, older)
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_url("**/ui/checkpoints?old=2*")
    assert page.locator("#consistency-verdict").inner_text() == "verified"
    anna.close()


def _open_request(net: Net) -> str:
    from sharechain.contracts import queries as q

    (req,) = [r for r in q.inbox(net.nodes[OWNER].store, OWNER) if not r.approvals]
    return req.id


def test_the_regulator_decides_computation_sessions_in_the_browser(net: Net, chromium: Any) -> None:
    from sharechain.contracts import derive_id
    from sharechain.contracts import privacy_queries as pq

    psi = {
        "kind": "psi",
        "parties": [OWNER, GRANTEE],
        "purpose": "sanctions screening",
        "max_set_size": 50,
        "duration": 3_600_000,
    }
    sid = derive_id("computation", _signed(net, OWNER, "computation.propose", psi))
    other = derive_id("computation", _signed(net, OWNER, "computation.propose", psi))
    net.sync()
    rita = Console(chromium, net.urls[SUPERVISOR])
    rita.login("rita")
    page = rita.page
    page.goto(f"/ui/privacy/sessions/{sid}")
    page.get_by_role("button", name="Approve").click()
    page.get_by_role("status").get_by_text("approve computation").wait_for()
    assert "done" in page.get_by_role("status").inner_text()
    assert "by regulator (rita)" in page.locator("ol.trail").inner_text()
    assert page.get_by_role("button", name="Approve").count() == 0

    page.goto(f"/ui/privacy/sessions/{other}")
    page.get_by_label(f"reason for denying computation {other[:12]}").fill("purpose too broad")
    page.get_by_role("button", name="Deny").click()
    page.get_by_role("status").get_by_text("deny computation").wait_for()
    assert page.locator("td.status-rejected").inner_text() == "rejected"
    rita.close()
    net.sync()
    store = net.nodes[OWNER].store
    assert pq.computation(store, sid).raw["operators"] == {SUPERVISOR: "rita"}
    assert pq.computation(store, other).raw["rejected"]["reason"] == "purpose too broad"
