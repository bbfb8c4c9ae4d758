"""The demo's new member: an organisation admitted while the network runs, its node joining.

A step of the story in `sharechain.demo`. The regulator proposes to admit a
community clinic (with the public halves of the keys the clinic made
itself); hospital-a's vote makes the majority of the admins. On a network
of nodes (``--network etcd``) the clinic's certificates are issued from the
network's development CAs (what `sharechain network issue-certs` does) and
its node starts with `sharechain node start --join URL` against the running
network: it fetches and checks the consortium's configuration through
hospital-b's node, syncs every block from its peers and the ordering
service, and ends at the same head and state root as every other node, with
nobody stopped. It then acts as a member through its own node: it asks for
access to hospital-a's dataset, and the request is on every copy of the
chain. On the embedded default there is no node to start; the admission and
the request are the same.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sharechain.contracts import membership
from sharechain.contracts.access import REQUEST
from sharechain.crypto.keyfile import OrgKeys, save_keys
from sharechain.errors import ConfigError
from sharechain.sharing.records import derive_id
from sharechain.storage.datadir import DataDir

if TYPE_CHECKING:
    from sharechain.demo import Story

__all__ = ["NEW_MEMBER", "step_new_member"]

NEW_MEMBER = "clinic-c"
"""The organisation admitted during the story."""
_PROPOSER, _VOTER, _THROUGH = "regulator", "hospital-a", "hospital-b"


def _admit(story: Story, keys: OrgKeys) -> str:
    """Propose and vote the clinic in; the proposal's status."""
    payload = {
        "action": "admit",
        "org": NEW_MEMBER,
        "roles": ["member"],
        "name": "Community Clinic C",
        "sign_key": keys.signing.public_key,
        "enc_key": keys.encryption_public,
    }
    r = story.plane(_PROPOSER).submit(_PROPOSER, membership.PROPOSE, payload)
    pid = derive_id("proposal", r.tx_id)
    story.plane(_VOTER).submit(_VOTER, membership.VOTE, {"proposal": pid, "approve": True})
    return next(p.status for p in story.plane(_VOTER).proposals() if p.id == pid)


def _join(story: Story, keys: OrgKeys) -> tuple[str, float]:
    """Start the clinic's node with --join (network mode); its URL and the seconds it took."""
    net = story.net
    assert net is not None
    data_dir = net.base / "nodes" / NEW_MEMBER
    key_file = data_dir / "keys" / f"{NEW_MEMBER}.key"
    save_keys(keys, key_file)  # the clinic's own key: only its node holds it
    story.consortium.key_files[NEW_MEMBER] = key_file
    story.consortium.settled()  # the admission is on hospital-b's node too
    started = time.perf_counter()
    spec = net.add_member(NEW_MEMBER, data_dir, through=_THROUGH)
    net.wait_ready([NEW_MEMBER], timeout=90)
    return spec.url, time.perf_counter() - started


def step_new_member(story: Story) -> None:
    net = story.net
    story.say(
        f"a new member joins the running consortium: {NEW_MEMBER}",
        "the clinic makes its keys; the regulator proposes to admit it and hospital-a's vote "
        "makes the majority of the admins."
        + (
            " Its etcd client certificate is issued from the network's CA (etcd requires mutual "
            f"TLS) and its node starts with `sharechain node start --join` through {_THROUGH}'s "
            "node: it checks the consortium's genesis, syncs every block and catches up while "
            "every other node keeps running"
            if net is not None
            else " (embedded: no node to start; with --network etcd its node joins the network)"
        ),
    )
    keys = OrgKeys.generate(NEW_MEMBER)
    status = _admit(story, keys)
    if status != "passed":
        raise ConfigError(f"the admission of {NEW_MEMBER} did not pass ({status})")
    rows = [("admission", f"proposed by {_PROPOSER}, voted by {_VOTER}: {status}")]
    if net is None:
        DataDir.open(story.consortium.base).save_keys(keys)
    else:
        url, took = _join(story, keys)
        rows.append(("its node", f"{url}, joined through {_THROUGH} in {took:.1f} s"))
    roots = story.consortium.settled()
    caught_up = len(set(roots.values())) == 1 and (net is None or NEW_MEMBER in roots)
    body = {
        "dataset": story.dataset,
        "purpose": "public-health",
        "duration": 7 * 86_400_000,
        "justification": "diabetes follow-up in the clinic's catchment area",
    }
    r = story.plane(NEW_MEMBER).submit(NEW_MEMBER, REQUEST, body)
    story.outcomes["new_member_request"] = r.code
    roots = story.consortium.settled()
    info = story.plane(NEW_MEMBER).chain_info()
    request = f"{derive_id('request', r.tx_id)[:16]} ({r.code})"
    rows.append(("its request", request + (", through its own node" if net else "")))
    rows += [
        ("its head", f"block {info.height}, {info.head_hash.hex()[:16]}..."),
        ("its state root", info.state_root.hex()[:16] + "..."),
    ]
    same = caught_up and len(set(roots.values())) == 1
    story.outcomes["join"] = "ok" if same else "its head or state root differs"
    if net is not None:
        agree = f"all {len(roots)}: the same head and state root" if same else "[red]differ[/]"
        rows.append(("every node", agree))
    story.console.print(story.kv(f"{NEW_MEMBER} is a member", rows))
