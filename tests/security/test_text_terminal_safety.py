"""Attack: member-supplied text that drives the terminal or lies about itself.

A dataset title, a rejection reason or an organisation name is written by
another member and printed on our operator's terminal. `terminal_safe` shows
every control, bidirectional and invisible character as a visible escape.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharechain.text import terminal_safe

ATTACKS = {
    "clear the screen": ("Blood tests\x1b[2J\x1b[H", "Blood tests\\x1b[2J\\x1b[H"),
    "set the window title": ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    "OSC 52 clipboard write": ("\x1b]52;c;cm0gLXJmIH4=\x07", "\\x1b]52;c;cm0gLXJmIH4=\\x07"),
    "C1 CSI": ("a\x9b31mred", "a\\x9b31mred"),
    "carriage return overwrite": ("approved\rrejected", "approved\\x0drejected"),
    "fake second line": ("ok\nhospital-a: granted", "ok\\x0ahospital-a: granted"),
    "backspaces": ("secret\x08\x08\x08\x08\x08\x08public", "secret" + "\\x08" * 6 + "public"),
    "right-to-left override": ("report\u202egpj.exe", "report\\u202egpj.exe"),
    "isolates": ("\u2067abc\u2069", "\\u2067abc\\u2069"),
    "embedding and pop": ("\u202aab\u202c", "\\u202aab\\u202c"),
    "bidi marks": ("a\u200fb\u061cc", "a\\u200fb\\u061cc"),
    "zero-width space in a name": ("hospital\u200b-a", "hospital\\u200b-a"),
    "byte order mark": ("\ufeffregulator", "\\ufeffregulator"),
    "tag characters (hidden text)": ("ok\U000e0041", "ok\\U000e0041"),
    "line separator": ("a\u2028b", "a\\u2028b"),
    "a leading joiner": ("\u200dregulator", "\\u200dregulator"),
    "a joiner next to a space": ("a \u200db", "a \\u200db"),
    "NUL": ("a\x00b", "a\\x00b"),
    "DEL": ("a\x7fb", "a\\x7fb"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_text_is_shown_not_obeyed(name: str) -> None:
    text, shown = ATTACKS[name]
    assert terminal_safe(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "Hôpital Saint-Éloi — résultats 2025",
        "مستشفى الرياض",  # right-to-left letters are not overrides
        "東京病院の検査結果",
        "\u0915\u094d\u200d\u0937",  # a joiner inside a Devanagari conjunct
        "\U0001f469\u200d\U0001f52c",  # an emoji ZWJ sequence
        "path\\to\\file 100% [ok] {x} <y>",
    ],
)
def test_honest_text_of_any_script_is_unchanged(text: str) -> None:
    assert terminal_safe(text) == text


def test_long_text_is_cut_with_an_ellipsis() -> None:
    assert terminal_safe("x" * 50, max_chars=10) == "x" * 9 + "\u2026"
    assert terminal_safe("short", max_chars=10) == "short"


def _dangerous(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")


@given(st.text(alphabet=st.characters(codec=None), max_size=80))
def test_no_control_or_format_character_survives_except_inner_joiners(text: str) -> None:
    safe = terminal_safe(text)
    for i, ch in enumerate(safe):
        if _dangerous(ch):
            assert ch in ("\u200c", "\u200d")
            assert 0 < i < len(safe) - 1
            assert not _dangerous(safe[i - 1]) and not safe[i - 1].isspace()
            assert not _dangerous(safe[i + 1]) and not safe[i + 1].isspace()


@given(st.text(max_size=80))
def test_making_safe_twice_changes_nothing_more(text: str) -> None:
    once = terminal_safe(text)
    assert terminal_safe(once) == once
