"""A node's background loops: each on a thread of its own, restarted when it fails.

A loop that raises anything but KeyboardInterrupt or SystemExit (a bug, a
native extension's panic) is logged and started again after a pause that
doubles up to 5 s, so no single failure silently ends replication or
ordering; those two end the loop (an etcd builder then gives up its
leadership).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["supervise"]

log = logging.getLogger("sharechain.node")


def supervise(
    org: str,
    name: str,
    target: Callable[[], None],
    stop: threading.Event,
    on_failure: Callable[[BaseException], None] | None = None,
) -> threading.Thread:
    """Start `target` on a daemon thread named `<org>-<name>`; restart it until `stop`.
    `on_failure` is told of each failure first (it must not raise)."""

    def supervised() -> None:
        failures = 0
        while not stop.is_set():
            try:
                target()
                return
            except (KeyboardInterrupt, SystemExit) as exc:
                # Not restarted: these ask to stop. On a thread there is
                # nobody to hand them to, so the loop just ends, loudly.
                log.error("ALERT %s: the %s loop stopped (%r)", org, name, exc)
                return
            except BaseException as exc:
                failures += 1
                log.exception("ALERT %s: the %s loop failed; starting it again", org, name)
                if on_failure is not None:
                    on_failure(exc)
                stop.wait(min(5.0, 0.05 * 2 ** min(failures, 7)))

    thread = threading.Thread(target=supervised, name=f"{org}-{name}", daemon=True)
    thread.start()
    return thread
