"""Pictures drawn on the server as inline SVG: a line chart, a lineage graph, a timeline.

No script draws anything in the browser. Every text placed in a picture is
escaped (titles of datasets are member-supplied), and the SVG uses
presentation attributes only, so the console's Content-Security-Policy (no
inline styles) does not strip its colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from sharechain.contracts.queries import Lineage

__all__ = ["Mark", "line_chart", "lineage_graph", "timeline"]

_INK = "#5d6b89"
_ACCENT = "#0172ad"
_KIND_COLOURS = {
    "request": "#8e44ad",
    "approval": "#0172ad",
    "release": "#d35400",
    "read": "#16a085",
    "rejection": "#e67e22",
    "revocation": "#c0392b",
    "purge": "#2c3e50",
    "input": "#2980b9",
    "result": "#27ae60",
    "other": "#7f8c8d",
}


def _svg(width: int, height: int, label: str, body: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f"{body}</svg>"
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def line_chart(
    points: Sequence[tuple[float, float]], *, label: str, unit: str, width: int = 420
) -> Markup:
    """A small line chart of (x, y) points (x: seconds, oldest first)."""
    height, pad = 120, 28
    if len(points) < 2:
        body = (
            f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" fill="{_INK}" '
            f'font-size="12">collecting samples\u2026</text>'
        )
        return _svg(width, height, f"{label}: not enough samples yet", body)
    x0, x1 = points[0][0], points[-1][0]
    top = max(y for _, y in points) or 1.0
    span = (x1 - x0) or 1.0

    def at(x: float, y: float) -> str:
        px = pad + (x - x0) / span * (width - 2 * pad)
        py = height - pad + 8 - y / top * (height - pad - 16)
        return f"{px:.1f},{py:.1f}"

    line = " ".join(at(x, y) for x, y in points)
    minutes = max(1, round(span / 60))
    body = (
        f'<line x1="{pad}" y1="{height - pad + 8}" x2="{width - pad}" y2="{height - pad + 8}" '
        f'stroke="{_INK}" stroke-width="1"/>'
        f'<polyline points="{line}" fill="none" stroke="{_ACCENT}" stroke-width="2"/>'
        f'<text x="{pad}" y="12" font-size="11" fill="{_INK}">{escape(label)} '
        f"(max {top:.3g} {escape(unit)})</text>"
        f'<text x="{pad}" y="{height - 4}" font-size="10" fill="{_INK}">{minutes} min ago</text>'
        f'<text x="{width - pad}" y="{height - 4}" font-size="10" fill="{_INK}" '
        f'text-anchor="end">now</text>'
    )
    last = points[-1][1]
    return _svg(width, height, f"{label}: now {last:.3g} {unit}, max {top:.3g}", body)


def _layers(lineage: Lineage) -> dict[str, int]:
    """Column of each dataset: the longest chain of parents (or older versions) before it."""
    depth = {n.id: 0 for n in lineage.nodes}
    for _ in range(len(depth)):  # at most |nodes| rounds on a DAG; the chain has no cycles
        changed = False
        for a, b, _kind in lineage.edges:
            if a in depth and b in depth and depth[b] < depth[a] + 1:
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            break
    return depth


def lineage_graph(lineage: Lineage, *, href: str) -> Markup:
    """Datasets as boxes, derivations as arrows, versions as dashed arrows, left to right.

    `href` is the link prefix of a dataset page (the id is appended).
    """
    depth = _layers(lineage)
    columns: dict[int, list[str]] = {}
    for node in lineage.nodes:
        columns.setdefault(depth[node.id], []).append(node.id)
    box_w, box_h, gap_x, gap_y = 170, 44, 60, 18
    pos = {
        i: (10 + col * (box_w + gap_x), 10 + row * (box_h + gap_y))
        for col, ids in columns.items()
        for row, i in enumerate(ids)
    }
    width = 20 + (max(columns) + 1) * (box_w + gap_x) - gap_x
    height = 20 + max(len(ids) for ids in columns.values()) * (box_h + gap_y) - gap_y
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        f'markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{_INK}"/>'
        "</marker></defs>"
    ]
    for a, b, kind in lineage.edges:
        if a not in pos or b not in pos:
            continue
        (ax, ay), (bx, by) = pos[a], pos[b]
        dash = ' stroke-dasharray="5,4"' if kind == "version" else ""
        parts.append(
            f'<line x1="{ax + box_w}" y1="{ay + box_h / 2}" x2="{bx}" y2="{by + box_h / 2}" '
            f'stroke="{_INK}" stroke-width="1.5" marker-end="url(#arrow)"{dash}>'
            f"<title>{escape(kind)}</title></line>"
        )
    for node in lineage.nodes:
        x, y = pos[node.id]
        root = node.id == lineage.root
        fill = _ACCENT if root else "#ffffff"
        ink = "#ffffff" if root else "#1b2832"
        parts.append(
            f'<a href="{escape(href + node.id)}"><rect x="{x}" y="{y}" width="{box_w}" '
            f'height="{box_h}" rx="6" fill="{fill}" stroke="{_ACCENT}"/>'
            f'<text x="{x + 8}" y="{y + 18}" font-size="12" fill="{ink}">'
            f"{escape(_short(node.title, 24))}</text>"
            f'<text x="{x + 8}" y="{y + 35}" font-size="10" fill="{ink}">'
            f"v{node.version} \u00b7 {escape(node.status)} \u00b7 {node.id[:8]}</text></a>"
        )
    return _svg(width, height, f"lineage of {len(lineage.nodes)} dataset(s)", "".join(parts))


@dataclass(frozen=True, slots=True)
class Mark:
    """One event on a timeline."""

    timestamp: int
    """Block time (ms)."""
    kind: str
    """`request`, `approval`, `rejection`, `release`, `read`, `revocation`, `purge`, `input`,
    `result` or `other`."""
    label: str
    """What happened, in a few words (shown on hover)."""


def timeline(marks: Sequence[Mark], *, width: int = 720) -> Markup:
    """Events as dots along block time, coloured by kind, with a legend."""
    height, pad = 70, 16
    if not marks:
        return _svg(width, 30, "no events", "")
    t0, t1 = marks[0].timestamp, marks[-1].timestamp
    span = (t1 - t0) or 1
    parts = [
        f'<line x1="{pad}" y1="24" x2="{width - pad}" y2="24" stroke="{_INK}" stroke-width="1"/>'
    ]
    for i, m in enumerate(marks):
        x = pad + (m.timestamp - t0) / span * (width - 2 * pad)
        y = 24 + (i % 3 - 1) * 7  # three lanes, so events in one block do not hide each other
        colour = _KIND_COLOURS.get(m.kind, _KIND_COLOURS["other"])
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{colour}"><title>{escape(m.label)}'
            "</title></circle>"
        )
    kinds = [k for k in _KIND_COLOURS if any(m.kind == k for m in marks)]
    for i, kind in enumerate(kinds):
        x = pad + i * 110
        parts.append(
            f'<circle cx="{x + 5}" cy="{height - 12}" r="5" fill="{_KIND_COLOURS[kind]}"/>'
            f'<text x="{x + 14}" y="{height - 8}" font-size="11" fill="{_INK}">{kind}</text>'
        )
    return _svg(width, height, f"timeline of {len(marks)} event(s)", "".join(parts))
