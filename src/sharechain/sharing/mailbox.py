"""Mailboxes: how the parties of a computation send each other its messages.

The messages of a PSI or aggregation session (blinded elements, evaluated
elements, announcements, masked inputs, key shares) never go on the chain.
Each organisation keeps a mailbox per session: its node (or, embedded, the
data directory) stores what the other parties post to it, and only it reads
them. The chain is the gate:

- only a party of the session (as the chain records it) posts, and only to
  a party (itself included: an aggregator keeps its own submission there);
  only the recipient reads its mail;
- a message is one of a kind (``psi.request``, ``agg.submission``, ...) per
  sender: a second one of the same kind is refused, so nobody can replace
  what it sent;
- every message is at most `MAX_MESSAGE` bytes and a session holds at most
  `MAX_MESSAGES` messages in all;
- once the session is rejected or expired on the chain its mailboxes are
  dropped (deleted) at the next touch, and nothing more is taken.

`MailboxStore` is the storage (files under a directory, written whole and
renamed into place, so a crash never leaves half a message); `open_mailbox`
applies the rules above for one organisation. `LocalMailbox` (embedded) and
`RemoteMailbox` (the nodes: a message is posted to the recipient's node, read
from one's own) are the two adapters of the `Mailbox` port the orchestration
(`sharing.computations`) is written against.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Protocol

from sharechain.api.client import NodeClient, raise_for_reply
from sharechain.api.privacy_records import computation_from_view
from sharechain.contracts.computations import Computation, computation_from_value, computation_key
from sharechain.errors import AccessDeniedError, ConfigError, EncodingError, NotFoundError
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store

__all__ = [
    "MAX_MESSAGE",
    "MAX_MESSAGES",
    "LocalMailbox",
    "Mailbox",
    "MailboxStore",
    "RemoteMailbox",
    "check_kind",
    "check_party",
    "guarded_post",
    "guarded_read",
    "recorded_computation",
    "view",
]

MAX_MESSAGE: Final = 16 * 1024 * 1024
"""Bytes per message: a PSI answer for 300,000 elements fits."""
MAX_MESSAGES: Final = 1024
"""Messages per session, all mailboxes together (an aggregation of 64 sends about 64 * 8)."""
_KIND = re.compile(r"^[a-z][a-z0-9.-]{0,31}$")


def recorded_computation(store: Store, session: str, where: str) -> Computation:
    """The session as the chain in `store` records it; `NotFoundError` naming `where` if none.

    Who may post and read is decided on this record at every message.
    """
    value = StateReader(store).get(computation_key(session))
    if value is None:
        raise NotFoundError(f"no computation {session} on {where}")
    return computation_from_value(value)


class Mailbox(Protocol):
    """The computation messages of the organisations this side acts for."""

    def computation(self, session: str) -> Computation:
        """The session as the chain records it; `NotFoundError` if there is none."""
        ...

    def post(self, session: str, sender: str, to: str, kind: str, body: bytes) -> None:
        """Leave `body` for `to` (sent as `sender`, who must hold its keys here)."""
        ...

    def read(self, session: str, me: str, kind: str) -> dict[str, bytes]:
        """`me`'s messages of `kind` in `session`: sender -> body."""
        ...


def check_kind(kind: str) -> None:
    if not _KIND.match(kind):
        raise EncodingError(
            f"message kind {kind[:40]!r} is not a lowercase name of up to 32 letters, "
            "digits, dots and dashes"
        )


def check_party(c: Computation, org: str, doing: str) -> None:
    """Refuse `org` unless it is a party of a session that has not ended."""
    if org not in c.parties:
        raise AccessDeniedError(f"only the parties of computation {c.id} may {doing}")
    if c.ended:
        raise NotFoundError(
            f"computation {c.id} is {c.status} on the chain: its mailboxes are closed"
        )


class MailboxStore:
    """Messages on disk: ``root/<session>/<recipient>/<kind>/<sender>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, session: str, *parts: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{1,128}", session):
            raise EncodingError("a computation session id is hex")
        return self.root.joinpath(session, *parts)

    def put(self, session: str, to: str, sender: str, kind: str, body: bytes) -> None:
        """Keep one message; refuse a second of the same kind, an oversized or surplus one."""
        check_kind(kind)
        if len(body) > MAX_MESSAGE:
            raise EncodingError(f"a message is at most {MAX_MESSAGE} bytes; this is {len(body)}")
        target = self._dir(session, to, kind, sender)
        if target.exists():
            raise AccessDeniedError(
                f"{sender} already sent {to} its {kind} message in this session; "
                "a second one is refused"
            )
        if self.count(session) >= MAX_MESSAGES:
            raise AccessDeniedError(
                f"computation {session} holds its maximum of {MAX_MESSAGES} messages"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
            os.link(tmp, target)  # fails if a concurrent post of the same kind won
        except FileExistsError:
            raise AccessDeniedError(
                f"{sender} already sent {to} its {kind} message in this session"
            ) from None
        finally:
            os.unlink(tmp)

    def get(self, session: str, to: str, kind: str) -> dict[str, bytes]:
        check_kind(kind)
        folder = self._dir(session, to, kind)
        if not folder.is_dir():
            return {}
        return {
            p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")
        }

    def count(self, session: str) -> int:
        folder = self._dir(session)
        if not folder.is_dir():
            return 0
        return sum(1 for p in folder.glob("*/*/*") if not p.name.startswith("."))

    def drop(self, session: str) -> bool:
        """Delete every message of `session`; whether there were any."""
        folder = self._dir(session)
        existed = folder.exists()
        shutil.rmtree(folder, ignore_errors=True)
        return existed


def guarded_read(store: MailboxStore, c: Computation, reader: str, kind: str) -> dict[str, bytes]:
    """`reader`'s mail of `kind`, after the chain's checks (and dropping an ended session)."""
    if c.ended:
        store.drop(c.id)
    check_party(c, reader, "read its mail")
    return store.get(c.id, reader, kind)


def guarded_post(
    store: MailboxStore, c: Computation, sender: str, to: str, kind: str, body: bytes
) -> None:
    """Keep `sender`'s message for `to` after the chain's checks."""
    if c.ended:
        store.drop(c.id)
    check_party(c, sender, "post to its mailboxes")
    if to not in c.parties:
        raise AccessDeniedError(f"{to} is not a party of computation {c.id}")
    store.put(c.id, to, sender, kind, body)


class LocalMailbox:
    """The embedded default: every organisation's mailboxes in the data directory."""

    def __init__(self, root: Path, computation: Callable[[str], Computation]) -> None:
        self.store = MailboxStore(root)
        self._computation = computation

    def computation(self, session: str) -> Computation:
        return self._computation(session)

    def post(self, session: str, sender: str, to: str, kind: str, body: bytes) -> None:
        guarded_post(self.store, self._computation(session), sender, to, kind, body)

    def read(self, session: str, me: str, kind: str) -> dict[str, bytes]:
        return guarded_read(self.store, self._computation(session), me, kind)


class RemoteMailbox:
    """The nodes: post to the recipient's node, read one's own (`node.mailbox`)."""

    def __init__(self, home: NodeClient, nodes: Mapping[str, NodeClient]) -> None:
        self.home = home
        self.nodes = nodes

    def computation(self, session: str) -> Computation:
        return computation_from_view(self.home.get_json(f"/v1/computations/{session}"))

    def post(self, session: str, sender: str, to: str, kind: str, body: bytes) -> None:
        if sender != self.home.org:
            raise ConfigError(f"this side signs as {self.home.org}, not {sender}")
        node = self.nodes.get(to)
        if node is None:
            raise ConfigError(
                f"no node of {to} is known from {self.home.base_url}; give a network file"
            )
        reply = node.http.post(
            f"/v1/computations/{session}/mailbox/{kind}", json={"body": body.hex()}
        )
        raise_for_reply(reply)

    def read(self, session: str, me: str, kind: str) -> dict[str, bytes]:
        if me != self.home.org:
            raise ConfigError(f"this side reads {self.home.org}'s mail, not {me}'s")
        reply = self.home.get_json(f"/v1/computations/{session}/mailbox/{kind}")
        return {m["sender"]: bytes.fromhex(m["body"]) for m in reply["messages"]}


def view(c: Computation) -> dict[str, object]:
    """A session as the API shows it (`api.mailbox.ComputationView`)."""
    raw = c.raw
    result = None
    if raw["result"] is not None:
        result = {k: v.hex() if isinstance(v, bytes) else v for k, v in raw["result"].items()}
    return {
        "id": c.id,
        "kind": c.kind,
        "proposer": c.proposer,
        "parties": list(c.parties),
        "client": c.client,
        "purpose": raw["purpose"],
        "limits": dict(c.limits),
        "input": dict(raw.get("input") or {"dataset": "", "column": ""}),
        "approval_required": raw["approval_required"],
        "approved_by": raw["approved_by"],
        "accepted": list(c.accepted),
        "status": c.status,
        "deadline": c.deadline,
        "commits": {k: {"digest": d.hex(), "size": n} for k, (d, n) in c.committed.items()},
        "result": result,
        "receipts": list(raw["receipts"]),
        "rejected": raw.get("rejected"),
        "expired": raw.get("expired"),
        "height": raw["height"],
        "tx_id": raw["tx_id"].hex(),
    }
