"""Transactions per second and commit latency over the last hour, sampled from the node's metrics.

Every `interval` seconds the sampler reads two of the node's Prometheus
series: the committed transactions (all codes) and the block commit time
(sum and count). The difference between two samples gives the rate and the
mean commit latency of that interval; an hour of samples is kept in memory.
Reading the metrics costs nothing on the commit path, and the page needs no
scan of the chain to draw its chart.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

from prometheus_client import CollectorRegistry

__all__ = ["HOUR", "Sample", "Sampler", "rates"]

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Sample:
    """Cumulative figures at one moment."""

    at: float
    """Wall-clock time (Unix seconds)."""
    transactions: float
    """Committed transactions so far (every validation code)."""
    commit_seconds: float
    """Total time spent committing blocks so far."""
    commits: float
    """Blocks committed so far."""


def read(registry: CollectorRegistry, at: float) -> Sample:
    txs = seconds = count = 0.0
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == "sharechain_transactions_total":
                txs += s.value
            elif s.name == "sharechain_block_commit_seconds_sum":
                seconds = s.value
            elif s.name == "sharechain_block_commit_seconds_count":
                count = s.value
    return Sample(at, txs, seconds, count)


def rates(
    samples: tuple[Sample, ...],
) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
    """(time, transactions per second) and (time, mean commit latency in ms) per interval."""
    tps: list[tuple[float, float]] = []
    latency: list[tuple[float, float]] = []
    for a, b in pairwise(samples):
        dt = b.at - a.at
        if dt <= 0:
            continue
        tps.append((b.at, max(0.0, b.transactions - a.transactions) / dt))
        blocks = b.commits - a.commits
        latency.append(
            (b.at, 1000 * (b.commit_seconds - a.commit_seconds) / blocks if blocks else 0)
        )
    return tuple(tps), tuple(latency)


class Sampler:
    """Samples a metrics registry every `interval` seconds, keeping the last hour."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        now: Callable[[], float],
        interval: float = 15.0,
    ) -> None:
        self.registry = registry
        self.interval = interval
        self._now = now
        self._samples: deque[Sample] = deque(maxlen=int(HOUR / interval) + 1)
        self._lock = threading.Lock()
        self.sample()

    def sample(self) -> Sample:
        s = read(self.registry, self._now())
        with self._lock:
            self._samples.append(s)
        return s

    def samples(self) -> tuple[Sample, ...]:
        """The kept samples and, last, the figures of this moment."""
        current = read(self.registry, self._now())
        with self._lock:
            kept = tuple(self._samples)
        return (*kept, current) if not kept or current.at > kept[-1].at else kept

    def run(self, stop: threading.Event) -> None:
        """Sample until `stop` is set (the node's thread)."""
        while not stop.wait(self.interval):
            self.sample()
