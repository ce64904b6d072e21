"""visible(): the characters that would hide or reorder text are spelled out, the rest kept."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from pyqueue.visible import BIDI_CONTROLS, TERMINAL_CONTROLS, visible

HIDDEN = re.compile(f"[{BIDI_CONTROLS}{TERMINAL_CONTROLS}]")


def test_each_bidi_control_is_spelled_out() -> None:
    controls = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    assert visible(controls) == "".join(f"<U+{ord(c):04X}>" for c in controls)
    assert visible("a\x1b[31mb\x07\x9bc") == "a<U+001B>[31mb<U+0007><U+009B>c"
    assert visible("line 1\r\nline 2\tend\r") == "line 1\nline 2\tend<U+000D>"


# Without '<', no input can look like a marker itself.
@given(st.text(st.characters(exclude_characters="<")))
def test_nothing_hidden_survives_and_nothing_else_changes(text: str) -> None:
    shown = visible(text)
    assert not HIDDEN.search(shown)
    # Taking the markers back out gives the text with its hidden characters removed.
    plain = re.sub(r"<U\+[0-9A-F]{4}>", "", shown)
    assert plain == HIDDEN.sub("", text.replace("\r\n", "\n"))
