"""Text from other members, made safe to show on a terminal.

Titles, descriptions, notes, reasons, purposes and organisation names come
from other members of the consortium, and some of them are hostile. Printed
as they are, such texts can drive the terminal (an `ESC [` sequence recolours
or clears the screen, rewrites the lines above, sets the window title, or, on
some terminals, writes to the clipboard) or lie about themselves: a Unicode
bidirectional override (U+202E) shows `txt.exe` for `exe.txt`, and invisible
characters make two different names look identical.

`terminal_safe` replaces every such character by a visible escape (`\\x1b`,
`\\u202e`), so what a member wrote is shown exactly, and nothing it wrote acts:

- C0 and C1 controls and DEL, newline and tab included (one text, one line);
- bidirectional embeddings, overrides and isolates (U+202A-U+202E,
  U+2066-U+2069) and marks (U+200E, U+200F, U+061C);
- other invisible format characters (zero-width space, word joiner, byte
  order mark, soft hyphen, tag characters, ...) and line or paragraph
  separators (U+2028, U+2029);
- zero-width joiners and non-joiners (U+200D, U+200C) except between two
  visible characters, where scripts and emoji sequences need them.

Everything else, letters of any script included, is left alone. The function
is pure; the CLI applies it to every member-supplied text it prints (HTML
output is escaped by its template engine instead).
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = ["JOINERS", "terminal_safe"]

JOINERS: Final = frozenset({"\u200c", "\u200d"})
"""Zero-width non-joiner and joiner: kept between two visible characters."""
_ESCAPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _hidden(ch: str) -> bool:
    return unicodedata.category(ch) in _ESCAPED_CATEGORIES


def _visible(ch: str) -> bool:
    return not ch.isspace() and not _hidden(ch)


def terminal_safe(text: str, *, max_chars: int | None = None) -> str:
    """`text` with every control, bidi and invisible format character shown as an escape.

    With `max_chars`, a longer result is cut there and ends with an ellipsis.
    """
    out = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch in JOINERS:
            keep = 0 < i < last and _visible(text[i - 1]) and _visible(text[i + 1])
            out.append(ch if keep else _escape(ch))
        elif _hidden(ch):
            out.append(_escape(ch))
        else:
            out.append(ch)
    safe = "".join(out)
    if max_chars is not None and len(safe) > max_chars:
        return safe[: max(0, max_chars - 1)] + "\u2026"
    return safe
