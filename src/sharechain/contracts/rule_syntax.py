"""The syntax of auto-approval rules, read without the evaluator.

CEL's own parser is recursive and crashes the process on deeply nested input,
so `sharechain.contracts.rules` measures a rule on a syntax tree of its own
first: this module reads a rule into that tree (`parse`), counting nodes and
depth as it builds and refusing, with `RuleLimitError`, as soon as a limit on
size, depth or literals is passed. Its own recursion is bounded by the same
depth limit. What it cannot read (message construction, optional fields,
anything outside plain CEL) it refuses too; `policies` then lets the
evaluator's parser say what is wrong, which is safe within the length limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_DEPTH",
    "MAX_LITERAL",
    "MAX_LITERAL_ITEMS",
    "MAX_NODES",
    "RELATIONS",
    "Node",
    "RuleLimitError",
    "parse",
]

MAX_NODES: Final = 256
"""Nodes of one rule's syntax tree."""
MAX_DEPTH: Final = 24
"""Depth of one rule's syntax tree (parentheses and brackets count too)."""
MAX_LITERAL: Final = 512
"""Characters of one text or bytes literal."""
MAX_LITERAL_ITEMS: Final = 64
"""Entries of one list or map literal."""

RELATIONS: Final = frozenset({"<", "<=", ">", ">=", "==", "!=", "in"})
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
class Node:
    """One node of a rule's syntax tree."""

    op: str
    """`lit`, `ident`, `select`, `index`, `call`, `list`, `map`, an operator, `!`, `neg`, `?:`."""
    args: tuple[Node, ...]
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

    def node(self, op: str, args: tuple[Node, ...] = (), name: str = "", text: str = "") -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise RuleLimitError("size", f"more than {MAX_NODES} syntax nodes")
        depth = 1 + max((a.depth for a in args), default=0)
        if depth > MAX_DEPTH:
            raise RuleLimitError("depth", f"nested more than {MAX_DEPTH} deep")
        return Node(op, args, name, text, depth)

    def expr(self) -> Node:
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

    _LEVELS = (("||",), ("&&",), tuple(RELATIONS), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self._LEVELS[level]:
            op = self.take()[1]
            left = self.node(op, (left, self.binary(level + 1)))
        return left

    def unary(self) -> Node:
        ops = []
        while self.peek() in ("!", "-"):
            ops.append(self.take()[1])
        out = self.member()
        for op in reversed(ops):
            out = self.node("!" if op == "!" else "neg", (out,))
        return out

    def member(self) -> Node:
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

    def arguments(self, close: str) -> tuple[Node, ...]:
        self.take()
        args: list[Node] = []
        while self.peek() != close:
            args.append(self.expr())
            if self.peek() != ",":
                break
            self.take()
        self.take(close)
        return tuple(args)

    def primary(self) -> Node:
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

    def map_entries(self) -> tuple[Node, ...]:
        self.take("{")
        items: list[Node] = []
        while self.peek() != "}":
            items.append(self.expr())
            self.take(":")
            items.append(self.expr())
            if self.peek() != ",":
                break
            self.take()
        self.take("}")
        return tuple(items)


def parse(source: str) -> Node:
    """The syntax tree of `source`; raises `RuleLimitError` past a limit or on unknown syntax."""
    parser = _Parser(source)
    tree = parser.expr()
    if parser.toks[parser.i][0] != "eof":
        raise RuleLimitError("syntax", f"unexpected {parser.toks[parser.i][1]!r} after the rule")
    return tree
