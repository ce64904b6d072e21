"""Python values as the SQL API takes them: JSON text, bounded ints, sendable text.

Each check refuses, with a message naming the argument, what the database
could not be sent or could not name itself; every rule about what a job may
hold stays in SQL.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pyqueue.errors import InvalidArgument, InvalidPayload
from pyqueue.typed import plain

# A NUL character, as json.dumps writes it: \u0000 after an even run of
# backslashes (each pair is an escaped backslash, not the start of an escape).
NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# One encoder for every payload: json.dumps with an option builds a new one per call.
# Dataclasses and pydantic models are written as JSON objects (typed.plain).
JSON_ENCODER = json.JSONEncoder(allow_nan=False, default=plain)


def to_json(payload: Any, what: str = "payload") -> str:
    """The value as JSON text for a jsonb parameter, refusing what JSON cannot hold.

    Text, cast to jsonb in the SQL, not psycopg's Jsonb wrapper: the text is
    needed here anyway for the checks below, and a wrapper would add an object
    and a closure to every payload of a batch.
    """
    try:
        text = JSON_ENCODER.encode(payload)
    except (TypeError, ValueError, RecursionError) as error:
        # RecursionError: nested deeper than the encoder can go.
        raise InvalidPayload(f"{what} is not JSON-serialisable: {error}") from None
    if "\\u0000" in text and NUL_ESCAPE.search(text):
        raise InvalidPayload(
            f"{what} contains \\u0000 (the NUL character), which PostgreSQL's jsonb cannot store"
        )
    if "\\ud" in text and has_lone_surrogate(payload):
        raise InvalidPayload(
            f"{what} contains a lone surrogate (U+D800 to U+DFFF without its pair), which is "
            "not Unicode text and PostgreSQL's jsonb cannot store"
        )
    return text


def has_lone_surrogate(payload: Any) -> bool:
    """Whether a string in the payload holds a surrogate code point outside a valid pair.

    A pair (as UTF-16 sources give them) is fine: JSON's \\ud83d\\ude00 is one
    character to PostgreSQL too.
    """
    raw = json.dumps(payload, ensure_ascii=False, default=plain)
    try:
        raw.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        return True
    return False


def sql_int(name: str, value: int | None, bits: int = 32) -> int | None:
    """An int bound for an `integer` (or, bits=64, `bigint`) argument of the SQL API.

    psycopg sends a larger int as bigint or numeric, and PostgreSQL would then
    report a missing function overload instead of the argument at fault; the
    range that matters is still checked in SQL.
    """
    limit = 2 ** (bits - 1)
    if value is not None and not -limit <= value < limit:
        raise InvalidArgument(f"{name} must fit a {bits}-bit integer, got {value}")
    return value


def check_queue_text(queue: str) -> None:
    """Refuse a queue name that cannot even be sent to PostgreSQL, as SQL refuses the others.

    A lone surrogate (U+D800 to U+DFFF without its pair) is not Unicode text:
    psycopg cannot encode it, so the database's own check never sees it.
    """
    if isinstance(queue, str) and not queue.isascii():
        try:
            queue.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(
                f"invalid queue name {queue[:120]!r}: it holds a lone surrogate, "
                "which is not Unicode text"
            ) from None


def sql_text(text: str) -> str:
    """Text PostgreSQL accepts: no NUL characters, no lone surrogates."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
