"""Text from jobs made safe to look at: invisible controls shown as <U+XXXX>.

A payload, error or queue name is written by whoever enqueued or failed the
job. Bidirectional controls (a right-to-left override, say) reorder what a
person reads, so `evil\u202egpj.exe` can pass for `evilexe.jpg`; other control
characters move a terminal's cursor or recolour it. The dashboard and the CLI
show each such character as its code point instead. Tab and newline stay.
"""

from __future__ import annotations

import re

# ALM, LRM, RLM, the embeddings and overrides (LRE..RLO) and isolates (LRI..PDI).
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# C0 but tab and newline, DEL, C1: what a terminal would act on.
TERMINAL_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f"
_HIDDEN = re.compile(f"[{BIDI_CONTROLS}{TERMINAL_CONTROLS}]")


def _code_point(match: re.Match[str]) -> str:
    return f"<U+{ord(match.group()):04X}>"


def visible(text: str) -> str:
    """`text` with every bidi or terminal control character spelled out as <U+XXXX>."""
    return _HIDDEN.sub(_code_point, text.replace("\r\n", "\n"))
