"""Auto-approval rules: the static limits that keep a CEL rule's evaluation bounded.

Every node evaluates a dataset's `auto_approve` rules for each access request,
inside a block, so a rule must cost the same small, bounded amount of work on
every node. A wall-clock timeout would not do: nodes differ in speed, so one
would give up where another finishes, and their states would split. Instead a
rule is measured once, when its policy is registered, from its text alone:

- its length, the number of nodes of its syntax tree and the tree's depth
  (the evaluator is recursive: thousands of nested terms overflow its stack
  and kill the process, so depth is checked *before* the evaluator sees the
  text);
- the size of its literals (text, lists, maps);
- how deeply comprehension macros (`all`, `exists`, `exists_one`, `map`,
  `filter`) nest, and that a `matches` pattern is written in the rule (not
  taken from the request, whose author would then choose the regex);
- an upper bound on its evaluation cost, in steps, computed over the largest
  values the contracts ever pass in (a request's justification is at most
  4096 characters, it names at most 256 fields, ...). A `map` whose body
  doubles a value, chained or nested, is caught here: the bound multiplies
  with every level.

A policy whose rules pass these checks evaluates in bounded time and memory
everywhere (about 20 ns per step on a development machine, so `MAX_COST` is
tens of milliseconds at worst). `check_rule` raises `RuleLimitError`, naming
the limit, for anything over; the text it cannot read (syntax outside plain
CEL, such as message construction or optional fields) is refused as well.
Reading the text into a syntax tree is `sharechain.contracts.rule_syntax`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sharechain.contracts.rule_syntax import (
    MAX_DEPTH,
    MAX_LITERAL,
    MAX_LITERAL_ITEMS,
    MAX_NODES,
    RELATIONS,
    Node,
    RuleLimitError,
    parse,
)

__all__ = [
    "MAX_COST",
    "MAX_DEPTH",
    "MAX_LITERAL",
    "MAX_LITERAL_ITEMS",
    "MAX_MACRO_NESTING",
    "MAX_NODES",
    "MAX_RULES",
    "MAX_RULE_CHARS",
    "RuleLimitError",
    "check_rule",
]

MAX_RULE_CHARS: Final = 1024
"""Characters in one rule."""
MAX_RULES: Final = 16
"""Rules in one policy."""
MAX_MACRO_NESTING: Final = 2
"""Comprehensions inside comprehensions: `a.all(x, b.exists(y, ...))` is 2."""
MAX_COST: Final = 1_000_000
"""Estimated evaluation steps of all the rules of one policy together."""

COMPREHENSIONS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
_FUNCTIONS: Final = frozenset(
    {"size", "int", "uint", "double", "string", "bytes", "bool", "type", "dyn", "matches"}
)
_METHODS: Final = frozenset(
    {"size", "contains", "startsWith", "endsWith", "matches", "lowerAscii", "upperAscii"}
)
_TYPE_NAMES: Final = frozenset(
    {"int", "uint", "double", "string", "bytes", "bool", "list", "map", "null_type", "type"}
)


# --- cost -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bound:
    """Upper bounds on a value: its size, how many elements it has, how big each is."""

    size: int
    """Characters of a text, 1 for a scalar, the sum of the parts (plus one each) of a container."""
    items: int = 0
    """Elements a comprehension over it visits."""
    item: _Bound | None = None
    """Bound of one element; None: any value no larger than the whole."""
    fields: tuple[tuple[str, _Bound], ...] | None = None
    """For the variables the contracts pass in: their fields."""


_ONE = _Bound(1)


def _text(n: int) -> _Bound:
    return _Bound(n)


def _list(n: int, item: _Bound) -> _Bound:
    return _Bound(n * (item.size + 1), n, item)


def _join(bounds: list[_Bound]) -> _Bound:
    if not bounds:
        return _ONE
    size = max(b.size for b in bounds)
    return _Bound(size, max(b.items for b in bounds), _Bound(size, size))


def _record(**fields: _Bound) -> _Bound:
    # Iterating a map visits its keys and indexing it gives a value: one bound
    # covering both (`_join`) keeps either use from being underestimated.
    keys = [_text(len(name)) for name in fields]
    size = sum(b.size + len(name) + 1 for name, b in fields.items())
    return _Bound(size, len(fields), _join([*keys, *fields.values()]), tuple(fields.items()))


# The largest values `access.request` passes in (see its payload checks).
VARIABLES: Final = {
    "request": _record(
        purpose=_text(256), duration=_ONE, fields=_list(256, _text(256)), justification=_text(4096)
    ),
    "requester": _record(org=_text(64), roles=_list(3, _text(16)), name=_text(4096)),
    "dataset": _record(
        id=_text(64),
        owner=_text(64),
        tags=_list(32, _text(256)),
        classification=_text(16),
        title=_text(256),
    ),
}


def _element(b: _Bound) -> _Bound:
    return b.item if b.item is not None else _Bound(b.size, b.size)


def _field(b: _Bound, name: str) -> _Bound:
    if b.fields is None:
        return _Bound(b.size, b.size)
    # A field the record lacks is an evaluation error: no value flows on.
    return dict(b.fields).get(name, _ONE)


def _steps(size: int) -> int:
    """Work to copy or compare a value: one step per 16 units (so memory stays under 16 MB)."""
    return 1 + size // 16


class _Estimator:
    def __init__(self) -> None:
        self.macro_depth = 0

    def cost(self, n: Node, scope: dict[str, _Bound]) -> tuple[_Bound, int]:
        """(bound of the value, steps to evaluate it) of `n` with variables in `scope`."""
        if n.op == "lit":
            return (_Bound(len(n.text)) if n.name == "str" else _ONE), 1
        if n.op == "ident":
            if n.name in scope:  # values are shared, not copied, when referenced
                return scope[n.name], 1
            if n.name in _TYPE_NAMES or n.name in ("true", "false", "null"):
                return _ONE, 1
            raise RuleLimitError(
                "names", f"uses {n.name!r}; a rule sees only request, requester and dataset"
            )
        if n.op == "call":
            return self.call(n, scope)
        parts = [self.cost(a, scope) for a in n.args]
        bounds = [b for b, _ in parts]
        steps = 1 + sum(c for _, c in parts)
        if n.op == "select":
            return _field(bounds[0], n.name), steps
        if n.op == "index":
            return _element(bounds[0]), steps
        if n.op in ("list", "map"):
            size = sum(b.size + 1 for b in bounds)
            items = len(bounds) // (2 if n.op == "map" else 1)
            return _Bound(size, items, _join(bounds)), steps + len(bounds)
        if n.op == "+":
            a, b = bounds
            out = _Bound(a.size + b.size, a.items + b.items, _join([_element(a), _element(b)]))
            return out, steps + _steps(out.size)
        if n.op == "in":
            a, b = bounds
            return _ONE, steps + b.items * _steps(a.size) + _steps(b.size)
        if n.op in RELATIONS:
            return _ONE, steps + _steps(bounds[0].size + bounds[1].size)
        if n.op == "?:":
            return _join(bounds[1:]), steps
        return _ONE, steps  # && || ! neg * / %: scalars

    def call(self, n: Node, scope: dict[str, _Bound]) -> tuple[_Bound, int]:
        if n.name in COMPREHENSIONS:
            return self.comprehension(n, scope)
        if n.name == "has" and len(n.args) == 1 and n.args[0].op == "select":
            return _ONE, 1 + self.cost(n.args[0].args[0], scope)[1]
        if n.name not in _FUNCTIONS and n.name not in _METHODS:
            raise RuleLimitError(
                "functions", f"calls {n.name}; only CEL's standard functions are allowed"
            )
        parts = [self.cost(a, scope) for a in n.args]
        steps = 1 + sum(c for _, c in parts)
        sizes = [b.size for b, _ in parts] or [1]
        if n.name == "matches" and (len(n.args) != 2 or n.args[1].op != "lit"):
            # A pattern from the request would let the requester pick the regex
            # every node compiles; the owner writes it instead.
            raise RuleLimitError("pattern", "matches takes a pattern written in the rule")
        if n.name in ("matches", "contains"):
            subject, pattern = sizes[0], [*sizes, 1][1]
            return _ONE, steps + _steps(pattern) ** 2 + _steps(subject) * _steps(pattern)
        if n.name in ("string", "bytes", "lowerAscii", "upperAscii"):
            return _Bound(sizes[0] + 32), steps + _steps(sizes[0])
        if n.name == "dyn" and parts:
            return parts[0][0], steps
        return _ONE, steps + _steps(sum(sizes))

    def comprehension(self, n: Node, scope: dict[str, _Bound]) -> tuple[_Bound, int]:
        if (
            len(n.args) not in (3, 4)
            or n.args[1].op != "ident"
            or (len(n.args) == 4 and n.name != "map")
        ):
            raise RuleLimitError("syntax", f"{n.name} takes a variable name and an expression")
        target, target_steps = self.cost(n.args[0], scope)  # a chain, not a nesting
        self.macro_depth += 1
        if self.macro_depth > MAX_MACRO_NESTING:
            raise RuleLimitError(
                "macro nesting", f"comprehensions nested more than {MAX_MACRO_NESTING} deep"
            )
        inner = {**scope, n.args[1].name: _element(target)}
        body = [self.cost(a, inner) for a in n.args[2:]]
        self.macro_depth -= 1
        each = 1 + sum(c for _, c in body)
        steps = target_steps + target.items * each
        if n.name == "map":
            item = body[-1][0]
            # The evaluator copies its accumulator on each step: quadratic in the items.
            copies = target.items * (target.items + 1) // 2 * _steps(item.size)
            return _list(target.items, item), steps + copies
        if n.name == "filter":
            copies = target.items * (target.items + 1) // 2 * _steps(_element(target).size)
            return target, steps + copies
        return _ONE, steps


def check_rule(source: str) -> int:
    """The estimated evaluation cost (steps) of `source`; raises `RuleLimitError` over a limit."""
    if len(source) > MAX_RULE_CHARS:
        raise RuleLimitError(
            "length", f"is {len(source)} characters long; at most {MAX_RULE_CHARS}"
        )
    tree = parse(source)
    _, steps = _Estimator().cost(tree, dict(VARIABLES))
    if steps > MAX_COST:
        raise RuleLimitError(
            "evaluation cost", f"may take about {steps:,} evaluation steps; at most {MAX_COST:,}"
        )
    return steps
