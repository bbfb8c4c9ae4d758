"""The process that keeps a local network running (started by `sharechain network up`).

`python -m sharechain.node.supervisor DIR [--orgs N] [--ordering solo|etcd]
[--plain-http]` creates or reopens the network directory (nodes on HTTPS from a
development CA unless `--plain-http`), starts etcd and the nodes, writes
the network file with `state: up`, and waits. SIGTERM or SIGINT (sent by
`sharechain network down`) stops the nodes first, then etcd, and records
`state: down`. On a start failure it records `state: failed` with the error.
While it waits it revokes the etcd access of every organisation the chain
removes, within `REVOKE_EVERY` seconds of the removal.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

from sharechain.errors import SharechainError
from sharechain.node.launcher import LocalNetwork

__all__ = ["REVOKE_EVERY", "main"]

REVOKE_EVERY = 5.0
"""Seconds between two checks for organisations the chain removed (their etcd
access is then revoked: `LocalNetwork.revoke_removed`)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sharechain.node.supervisor")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--orgs", type=int, default=4)
    parser.add_argument("--ordering", default="solo")
    parser.add_argument("--plain-http", action="store_true")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        net = LocalNetwork(
            args.dir, orgs=args.orgs, ordering=args.ordering, tls=not args.plain_http
        )
    except (SharechainError, OSError, ValueError) as exc:
        print(f"cannot create the network: {exc}", flush=True)
        return 2
    try:
        net.up()
    except (SharechainError, OSError) as exc:
        net.write_file(state="failed", error=str(exc))
        print(f"network failed to start: {exc}", flush=True)
        return 1
    print(f"network up in {args.dir}", flush=True)
    while not stop.wait(REVOKE_EVERY):
        for org in net.revoke_removed():
            print(f"{org} was removed from the consortium: its etcd access is revoked", flush=True)
    net.down()
    print("network down", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
