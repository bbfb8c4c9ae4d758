"""A node process whose clock is skewed: `python -m sharechain.faults.skewed_node SECONDS ...`.

The fault schedule's ``skew`` restarts a node through this module: it moves
the process's wall clock (`time.time`, `time.time_ns`) by SECONDS before
anything of sharechain is imported, so every default `now=time.time` and
every timestamp the node makes (the blocks it builds, its request
signatures, attestations) is off by that much, as on a host whose NTP
failed; the monotonic clock is left alone. Then it runs `sharechain node`
with the remaining arguments.
"""

from __future__ import annotations

import sys
import time

__all__ = ["main", "skew_clock"]


def skew_clock(seconds: float) -> None:
    """Move this process's wall clock by `seconds` (negative: behind)."""
    real, real_ns = time.time, time.time_ns
    shift_ns = int(seconds * 1e9)
    time.time = lambda: real() + seconds
    time.time_ns = lambda: real_ns() + shift_ns


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m sharechain.faults.skewed_node SECONDS start [node options]")
    try:
        seconds = float(argv[0])
    except ValueError:
        sys.exit(f"the skew must be a number of seconds, not {argv[0]!r}")
    skew_clock(seconds)
    from sharechain.cli.node_cmd import node_app  # after the clock moved: defaults bind to it

    node_app(args=argv[1:], prog_name="sharechain node")


if __name__ == "__main__":
    main(sys.argv[1:])
