"""Server-drawn SVG: escaped text, no style attributes, a layout that follows the edges."""

from __future__ import annotations

import re

from web_kit import XSS

from sharechain.contracts.datasets import Dataset
from sharechain.contracts.policies import Policy
from sharechain.contracts.queries import Lineage
from sharechain.web.charts import Mark, line_chart, lineage_graph, timeline
from sharechain.web.describe import duration_words, payload_rows, policy_words
from sharechain.web.throughput import Sample, rates


def _ds(i: str, title: str, version: int = 1) -> Dataset:
    return Dataset(
        i,
        "hospital-a",
        title,
        "",
        (),
        (),
        "internal",
        b"",
        b"",
        0,
        b"",
        "owner",
        (),
        Policy(),
        "active",
        version,
        "",
        "",
        (),
        "",
        0,
        0,
        b"",
    )


def test_lineage_escapes_titles_and_places_children_right_of_parents() -> None:
    lineage = Lineage(
        "c",
        (_ds("a", XSS), _ds("b", "B"), _ds("c", "child")),
        (("a", "c", "derived"), ("b", "c", "derived"), ("a", "b", "version")),
    )
    svg = str(lineage_graph(lineage, href="/ui/datasets/"))
    assert "<img" not in svg and "&lt;img src=x" in svg
    xs = {m[1]: int(m[0]) for m in re.findall(r'<rect x="(\d+)"[^>]*>.*?v\d · \w+ · (\w)', svg)}
    assert xs["a"] < xs["b"] < xs["c"]
    assert svg.count("stroke-dasharray") == 1 and 'href="/ui/datasets/c"' in svg
    assert " style=" not in svg


def test_line_chart_and_timeline() -> None:
    assert "collecting samples" in str(line_chart([], label="tps", unit="tx/s"))
    chart = str(line_chart([(0, 1.0), (60, 4.0), (120, 2.0)], label="<tps>", unit="tx/s"))
    assert "<polyline" in chart and "&lt;tps&gt;" in chart and "max 4 tx/s" in chart
    marks = [Mark(1000, "request", XSS), Mark(2000, "read", "read by bank-b")]
    svg = str(timeline(marks))
    assert svg.count("<circle") == 4 and "<img" not in svg  # two events, two legend dots


def test_rates_from_cumulative_samples() -> None:
    samples = (Sample(0, 0, 0.0, 0), Sample(10, 50, 0.2, 4), Sample(20, 50, 0.2, 4))
    tps, latency = rates(samples)
    assert tps == ((10, 5.0), (20, 0.0))
    assert latency[0] == (10, 50.0) and latency[1] == (20, 0)


def test_words() -> None:
    assert duration_words(3 * 86_400_000) == "3 d" and duration_words(1500) == "1.5 s"
    words = policy_words(Policy(purposes=("research",), max_uses=2))
    assert "Allowed purposes: research." in words and "At most 2 key release(s) per grant." in words
    rows = dict(payload_rows({"grant": "ab", "wrapped": b"\x01" * 40, "m": {"k": 1}}))
    assert rows["m.k"] == "1" and rows["wrapped"].endswith("(40 bytes)")
