"""A strict parser for the few RFC 8941 structured-field shapes of RFC 9421 headers.

`Signature-Input` is a dictionary of inner lists of strings with parameters,
`Signature` a dictionary of byte sequences; nothing else is accepted, and every
fault is an `AuthenticationError` naming where the header went wrong.
"""

from __future__ import annotations

import base64
import re

from sharechain.errors import AuthenticationError

__all__ = ["parse_dictionary"]

# Keys and strings without escapes (all that signers send) are matched whole:
# reading them a character at a time was a third of the cost of a verification.
_KEY = re.compile(r"[a-z0-9_\-.*]+")
_PLAIN_STRING = re.compile(r'"([ !#-\[\]-~]*)"')


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def fail(self, what: str) -> AuthenticationError:
        return AuthenticationError(f"malformed signature header: {what} at offset {self.i}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}")
        self.i += 1

    def key(self) -> str:
        m = _KEY.match(self.s, self.i)
        if m is None:
            raise self.fail("expected a key")
        self.i = m.end()
        return m.group()

    def string(self) -> str:
        m = _PLAIN_STRING.match(self.s, self.i)
        if m is not None:
            self.i = m.end()
            return m.group(1)
        self.expect('"')
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise self.fail("unterminated string")
            self.i += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                ch = self.peek()
                if ch not in ('"', "\\"):
                    raise self.fail("bad escape")
                self.i += 1
            elif not (" " <= ch <= "~"):
                raise self.fail("non-ASCII character in string")
            out.append(ch)

    def bare(self) -> str | int | bytes:
        ch = self.peek()
        if ch == '"':
            return self.string()
        if ch == ":":
            self.i += 1
            end = self.s.find(":", self.i)
            if end < 0:
                raise self.fail("unterminated byte sequence")
            raw, self.i = self.s[self.i : end], end + 1
            try:
                return base64.b64decode(raw, validate=True)
            except ValueError:
                raise self.fail("bad base64") from None
        if ch == "-" or ch.isdigit():
            start = self.i
            self.i += 1
            while self.peek().isdigit():
                self.i += 1
            if self.i - start > 16:
                raise self.fail("integer too long")
            return int(self.s[start : self.i])
        raise self.fail("expected a string, integer or byte sequence")

    def params(self) -> dict[str, str | int | bytes]:
        out: dict[str, str | int | bytes] = {}
        while self.peek() == ";":
            self.i += 1
            name = self.key()
            self.expect("=")
            out[name] = self.bare()
        return out

    def dictionary(self, inner: bool) -> dict[str, tuple[object, dict[str, str | int | bytes]]]:
        out: dict[str, tuple[object, dict[str, str | int | bytes]]] = {}
        while True:
            while self.peek() == " ":
                self.i += 1
            name = self.key()
            self.expect("=")
            value: object
            if inner:
                self.expect("(")
                items: list[str] = []
                while self.peek() != ")":
                    if not self.peek():
                        raise self.fail("unterminated inner list")
                    items.append(self.string())
                    if self.peek() == " ":
                        self.i += 1
                self.i += 1
                value = tuple(items)
            else:
                value = self.bare()
            out[name] = (value, self.params())
            while self.peek() == " ":
                self.i += 1
            if not self.peek():
                return out
            self.expect(",")


def parse_dictionary(
    header: str | None, what: str, inner: bool
) -> dict[str, tuple[object, dict[str, str | int | bytes]]]:
    """The dictionary of the header `what` (inner lists or bare items, with parameters)."""
    if not header:
        raise AuthenticationError(
            f"the request is not signed (no {what} header); sign it with the organisation's "
            "key as RFC 9421 describes (the sharechain client does this)"
        )
    if len(header) > 4096:
        raise AuthenticationError(f"{what} header too long")
    return _Parser(header).dictionary(inner)
