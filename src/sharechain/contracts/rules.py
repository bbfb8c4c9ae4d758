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
  `filter`) nest;
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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

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
MAX_NODES: Final = 256
"""Nodes of one rule's syntax tree."""
MAX_DEPTH: Final = 24
"""Depth of one rule's syntax tree (parentheses and brackets count too)."""
MAX_LITERAL: Final = 512
"""Characters of one text or bytes literal."""
MAX_LITERAL_ITEMS: Final = 64
"""Entries of one list or map literal."""
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
_RELATIONS: Final = frozenset({"<", "<=", ">", ">=", "==", "!=", "in"})
_RESERVED: Final = frozenset(
    {"as", "break", "const", "continue", "else", "for", "function", "if", "import", "let"}
    | {"loop", "package", "namespace", "return", "var", "void", "while"}
)


class RuleLimitError(ValueError):
    """A rule exceeds a limit (`limit` names it) or uses syntax the limits cannot measure."""

    def __init__(self, limit: str, message: str) -> None:
        named = limit not in ("syntax", "names", "functions")
        super().__init__(f"{message} (limit on {limit})" if named else message)
        self.limit = limit


# --- tokens ---------------------------------------------------------------------------------

# Raw strings come first: in them a backslash escapes nothing, so `r"\"` ends
# where CEL says it ends. Reading a literal differently from CEL would let
# code hide inside what these checks take for text.
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<raw>(?:[rR][bB]?|[bB][rR])(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n\r]*"|'[^'\n\r]*'))
  | (?P<str>[bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''
              |"(?:\\.|[^"\\\n\r])*"|'(?:\\.|[^'\\\n\r])*'))
  | (?P<num>(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|0[xX][0-9a-fA-F]+[uU]?|\d+[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[<>!+\-*/%?:.,\[\]{}()])
    """,
    re.VERBOSE,
)


def _tokens(source: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise RuleLimitError("syntax", f"unexpected character {source[pos]!r} at {pos}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(("str" if kind == "raw" else kind, m.group()))
        pos = m.end()
    out.append(("eof", ""))
    return out


# --- syntax tree ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    op: str
    """`lit`, `ident`, `select`, `index`, `call`, `list`, `map`, an operator, `!`, `neg`, `?:`."""
    args: tuple[_Node, ...]
    """Operands; for a method call the receiver comes first."""
    name: str = ""
    """Identifier, field or function name; for `lit` the token kind."""
    text: str = ""
    """For `lit`: the literal as written."""
    depth: int = 1
    """Height of the subtree."""


class _Parser:
    """Recursive descent over CEL's grammar, counting nodes and depth as it builds."""

    def __init__(self, source: str) -> None:
        self.toks = _tokens(source)
        self.i = 0
        self.nodes = 0
        self.nesting = 0

    def peek(self) -> str:
        return self.toks[self.i][1] if self.toks[self.i][0] in ("op", "ident") else ""

    def take(self, expected: str = "") -> tuple[str, str]:
        tok = self.toks[self.i]
        if expected and tok[1] != expected:
            raise RuleLimitError("syntax", f"expected {expected!r}, found {tok[1] or 'the end'!r}")
        self.i += 1
        return tok

    def node(self, op: str, args: tuple[_Node, ...] = (), name: str = "", text: str = "") -> _Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise RuleLimitError("size", f"more than {MAX_NODES} syntax nodes")
        depth = 1 + max((a.depth for a in args), default=0)
        if depth > MAX_DEPTH:
            raise RuleLimitError("depth", f"nested more than {MAX_DEPTH} deep")
        return _Node(op, args, name, text, depth)

    def expr(self) -> _Node:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise RuleLimitError("depth", f"nested more than {MAX_DEPTH} deep")
        cond = self.binary(0)
        if self.peek() == "?":
            self.take()
            yes = self.binary(0)
            self.take(":")
            cond = self.node("?:", (cond, yes, self.expr()))
        self.nesting -= 1
        return cond

    _LEVELS = (("||",), ("&&",), tuple(_RELATIONS), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> _Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self._LEVELS[level]:
            op = self.take()[1]
            left = self.node(op, (left, self.binary(level + 1)))
        return left

    def unary(self) -> _Node:
        ops = []
        while self.peek() in ("!", "-"):
            ops.append(self.take()[1])
        out = self.member()
        for op in reversed(ops):
            out = self.node("!" if op == "!" else "neg", (out,))
        return out

    def member(self) -> _Node:
        out = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == "[":
                out = self.node("index", (out, self.expr()))
                self.take("]")
                continue
            kind, name = self.take()
            if kind != "ident":
                raise RuleLimitError("syntax", f"a field name must follow '.', not {name!r}")
            if self.peek() == "(":
                out = self.node("call", (out, *self.arguments(")")), name)
            else:
                out = self.node("select", (out,), name)
        return out

    def arguments(self, close: str) -> tuple[_Node, ...]:
        self.take()
        args: list[_Node] = []
        while self.peek() != close:
            args.append(self.expr())
            if self.peek() != ",":
                break
            self.take()
        self.take(close)
        return tuple(args)

    def primary(self) -> _Node:
        kind, text = self.toks[self.i]
        if kind in ("num", "str"):
            self.take()
            if kind == "str" and len(text) > MAX_LITERAL:
                raise RuleLimitError("literal size", f"a text longer than {MAX_LITERAL} characters")
            return self.node("lit", (), kind, text)
        if kind == "ident":
            if text in _RESERVED:
                raise RuleLimitError("syntax", f"{text!r} is a reserved word")
            self.take()
            if self.peek() == "(":
                return self.node("call", self.arguments(")"), text)
            if self.peek() == "{":
                raise RuleLimitError("syntax", "message construction is not available to rules")
            return self.node("ident", (), text)
        if text == "(":
            self.take()
            out = self.expr()
            self.take(")")
            return out
        if text in ("[", "{"):
            close = "]" if text == "[" else "}"
            items = self.map_entries() if text == "{" else self.arguments(close)
            if len(items) > MAX_LITERAL_ITEMS * (2 if text == "{" else 1):
                raise RuleLimitError("literal size", f"a literal of over {MAX_LITERAL_ITEMS} items")
            return self.node("list" if text == "[" else "map", items)
        raise RuleLimitError("syntax", f"unexpected {text or 'end of rule'!r}")

    def map_entries(self) -> tuple[_Node, ...]:
        self.take("{")
        items: list[_Node] = []
        while self.peek() != "}":
            items.append(self.expr())
            self.take(":")
            items.append(self.expr())
            if self.peek() != ",":
                break
            self.take()
        self.take("}")
        return tuple(items)


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


def _record(**fields: _Bound) -> _Bound:
    return _Bound(sum(b.size + 1 for b in fields.values()), 0, None, tuple(fields.items()))


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


def _join(bounds: list[_Bound]) -> _Bound:
    if not bounds:
        return _ONE
    size = max(b.size for b in bounds)
    return _Bound(size, max(b.items for b in bounds), _Bound(size, size))


class _Estimator:
    def __init__(self) -> None:
        self.macro_depth = 0

    def cost(self, n: _Node, scope: dict[str, _Bound]) -> tuple[_Bound, int]:
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
        if n.op in _RELATIONS:
            return _ONE, steps + _steps(bounds[0].size + bounds[1].size)
        if n.op == "?:":
            return _join(bounds[1:]), steps
        return _ONE, steps  # && || ! neg * / %: scalars

    def call(self, n: _Node, scope: dict[str, _Bound]) -> tuple[_Bound, int]:
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
        if n.name in ("matches", "contains"):
            subject, pattern = sizes[0], [*sizes, 1][1]
            return _ONE, steps + _steps(pattern) ** 2 + _steps(subject) * _steps(pattern)
        if n.name in ("string", "bytes", "lowerAscii", "upperAscii"):
            return _Bound(sizes[0] + 32), steps + _steps(sizes[0])
        if n.name == "dyn" and parts:
            return parts[0][0], steps
        return _ONE, steps + _steps(sum(sizes))

    def comprehension(self, n: _Node, scope: dict[str, _Bound]) -> tuple[_Bound, int]:
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
    parser = _Parser(source)
    tree = parser.expr()
    if parser.toks[parser.i][0] != "eof":
        raise RuleLimitError("syntax", f"unexpected {parser.toks[parser.i][1]!r} after the rule")
    _, steps = _Estimator().cost(tree, dict(VARIABLES))
    if steps > MAX_COST:
        raise RuleLimitError(
            "evaluation cost", f"may take about {steps:,} evaluation steps; at most {MAX_COST:,}"
        )
    return steps
