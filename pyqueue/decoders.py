"""Decoders: a job's JSON payload into the type a handler's annotation names.

`decoder_for(annotation)` builds, once per handler, a function that turns a
JSON value into that type or raises PayloadMismatch naming the field at fault
("payload.lines[0].quantity: expected int, got str '2'"). It knows JSON's own
types, X | None, Literal, enums, datetime, date, UUID, Decimal, dataclasses,
TypedDicts and pydantic models (by their model_validate), nested as they may
be; any other type is refused with InvalidArgument when the decoder is built.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import types
import typing
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Union

from pyqueue.errors import InvalidArgument, PayloadMismatch

# Decodes one value found at `path` ("payload", "payload.items[2]"...).
Decode = Callable[[Any, str], Any]

_ANY = (Any, object, inspect.Parameter.empty)
_SCALARS: dict[type, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
}


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def mismatch(path: str, expected: str, value: Any) -> PayloadMismatch:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return PayloadMismatch(f"{path}: expected {expected}, got {_kind(value)} {shown}")


def decoder_for(annotation: Any) -> Decode | None:
    """How to decode a payload into `annotation`; None when the JSON value is taken as it is.

    Raises InvalidArgument for a type it cannot decode.
    """
    if annotation in _ANY or annotation in (dict, list) or _is_json_alias(annotation):
        return None
    return _build(annotation)


def _is_json_alias(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    return origin in (dict, list) and all(a in _ANY for a in args[1:] or args)


def _build(tp: Any) -> Decode:
    if tp in _ANY:
        return lambda value, path: value
    if tp is None or tp is type(None):
        return _exactly_none
    if tp in _SCALARS:
        return _scalar(tp)
    if tp in (dt.datetime, dt.date, uuid.UUID, Decimal):
        return _from_text(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return _literal(typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return _union(tp, [_build(a) for a in typing.get_args(tp)])
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise InvalidArgument(f"cannot decode payloads into {tp}: use list[...] for arrays")
        return _list(_build(args[0] if args else Any), tuple if origin is tuple else list)
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        if args and args[0] is not str:
            raise InvalidArgument(f"cannot decode payloads into {tp}: JSON object keys are text")
        return _dict(_build(args[1] if args else Any))
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return _enum(tp)
        if dataclasses.is_dataclass(tp):
            return _dataclass(tp)
        if typing.is_typeddict(tp):
            return _typeddict(tp)
        validate = getattr(tp, "model_validate", None)
        if callable(validate):
            return _model(tp, validate)
    raise InvalidArgument(
        f"cannot decode payloads into {tp!r}: use a dataclass, a TypedDict, a pydantic "
        "model, JSON types (str, int, float, bool, None, list[...], dict[str, ...]) or Any"
    )


def _exactly_none(value: Any, path: str) -> None:
    if value is not None:
        raise mismatch(path, "null", value)


def _scalar(tp: type) -> Decode:
    accepted = _SCALARS[tp]

    def decode(value: Any, path: str) -> Any:
        fits = isinstance(value, accepted) and (tp is bool or not isinstance(value, bool))
        if not fits:
            raise mismatch(path, tp.__name__, value)
        return float(value) if tp is float else value  # JSON writes 2.0 as 2 in some clients

    return decode


def _from_text(tp: type) -> Decode:
    parse: Callable[[str], Any] = getattr(tp, "fromisoformat", tp)

    def decode(value: Any, path: str) -> Any:
        if isinstance(value, str):
            try:
                return parse(value)
            except (ValueError, ArithmeticError):
                pass
        raise mismatch(path, f"{tp.__name__} as text", value)

    return decode


def _literal(options: tuple[Any, ...]) -> Decode:
    def decode(value: Any, path: str) -> Any:
        # type() too: JSON's true is not the literal 1, nor 1 the literal true.
        if not any(value == o and type(value) is type(o) for o in options):
            raise mismatch(path, f"one of {list(options)}", value)
        return value

    return decode


def _union(tp: Any, choices: list[Decode]) -> Decode:
    def decode(value: Any, path: str) -> Any:
        for choice in choices:
            try:
                return choice(value, path)
            except PayloadMismatch:
                continue
        raise mismatch(path, str(tp).replace("typing.", ""), value)

    return decode


def _list(item: Decode, kind: type) -> Decode:
    def decode(value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise mismatch(path, "an array", value)
        return kind(item(v, f"{path}[{i}]") for i, v in enumerate(value))

    return decode


def _dict(item: Decode) -> Decode:
    def decode(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise mismatch(path, "an object", value)
        return {k: item(v, f"{path}.{k}") for k, v in value.items()}

    return decode


def _enum(tp: type[enum.Enum]) -> Decode:
    def decode(value: Any, path: str) -> Any:
        try:
            return tp(value)
        except ValueError:
            raise mismatch(path, f"a value of {tp.__name__}", value) from None

    return decode


def _fields(tp: type, hints: dict[str, Any], required: set[str]) -> Decode:
    """Decode a JSON object into keyword arguments by field, naming unknown and missing ones."""
    fields = {name: _build(hint) for name, hint in hints.items()}

    def decode(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise mismatch(path, f"an object for {tp.__name__}", value)
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise PayloadMismatch(f"{path}: {tp.__name__} has no field {', '.join(unknown)}")
        missing = sorted(required - set(value))
        if missing:
            raise PayloadMismatch(f"{path}: {tp.__name__} needs field {', '.join(missing)}")
        return {k: fields[k](v, f"{path}.{k}") for k, v in value.items()}

    return decode


def _dataclass(tp: type) -> Decode:
    hints = typing.get_type_hints(tp)
    init = [f for f in dataclasses.fields(tp) if f.init]
    required = {
        f.name
        for f in init
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    arguments = _fields(tp, {f.name: hints[f.name] for f in init}, required)

    def decode(value: Any, path: str) -> Any:
        return tp(**arguments(value, path))

    return decode


def _typeddict(tp: type) -> Decode:
    hints = typing.get_type_hints(tp)
    required: set[str] = set(getattr(tp, "__required_keys__", hints))
    return _fields(tp, hints, required)


def _model(tp: type, validate: Callable[[Any], Any]) -> Decode:
    def decode(value: Any, path: str) -> Any:
        try:
            return validate(value)
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            first = str(error).splitlines()
            detail = "; ".join(line.strip() for line in first[1:3]) or str(error)
            raise PayloadMismatch(f"{path}: does not fit {tp.__name__}: {detail}") from None

    return decode
