"""Typed payloads and results: dataclasses, TypedDicts and pydantic models as JSON.

Encoding (`plain`) turns a dataclass or a pydantic model into what JSON holds,
for enqueue and for a handler's result. Decoding is built once per handler
(`payload_decoder`), from the annotation of its payload argument, by
decoders.py: it turns the JSON a job holds back into that type, or raises
PayloadMismatch naming the field at fault. A type it cannot decode is refused
when the handler is registered, not when its first job runs.

pydantic is optional: a model class is recognised by its `model_validate`
method, and pydantic's ValidationError only when pydantic is installed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import inspect
import typing
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Protocol, TypeAlias, runtime_checkable

from pyqueue.decoders import Decode, decoder_for
from pyqueue.errors import InvalidArgument, PayloadMismatch

__all__ = ["Decode", "Payload", "PayloadMismatch", "decoder_for", "payload_decoder", "plain"]


class DataclassInstance(Protocol):
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


@runtime_checkable
class ModelInstance(Protocol):
    """A pydantic model instance (or anything that dumps itself to JSON the same way)."""

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


# What enqueue accepts: JSON values (a TypedDict is a Mapping), dataclasses and
# pydantic models. The elements of arrays and objects are checked when encoded:
# a precise recursive type would refuse a list[int] (lists are invariant).
Payload: TypeAlias = (
    bool
    | int
    | float
    | str
    | list[Any]
    | tuple[Any, ...]
    | Mapping[str, object]
    | DataclassInstance
    | ModelInstance
    | None
)


def plain(value: Any) -> Any:
    """A dataclass or pydantic model as JSON values; json's `default` hook.

    Plain dicts and lists never come here (json encodes them itself), so an
    untyped payload is as strict as before: a datetime in a dict is refused,
    while a dataclass field of type datetime is written as ISO 8601 text.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _field_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, ModelInstance) and not isinstance(value, type):
        return value.model_dump(mode="json")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _field_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_field_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _field_value(v) for k, v in value.items()}
    return value  # a nested dataclass or model goes back through plain()


def payload_decoder(handler: Callable[..., Any], queue: str) -> Decode | None:
    """The decoder for the payload argument (the first) of `handler`; None if untyped.

    Works for functions, methods, functools.partial and callable objects.
    Raises InvalidArgument when its annotation cannot be resolved or decoded.
    """
    try:
        parameters = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: untyped
        return None
    if not parameters or parameters[0].annotation is inspect.Parameter.empty:
        return None
    annotation = parameters[0].annotation
    if isinstance(annotation, str):  # postponed (from __future__ import annotations)
        annotation = _resolve(handler, parameters[0].name, queue)
    try:
        return decoder_for(annotation)
    except InvalidArgument as error:
        raise InvalidArgument(f"the handler of {queue!r}: {error}") from None


def _resolve(handler: Callable[..., Any], name: str, queue: str) -> Any:
    """The annotation of parameter `name`, evaluated where the function was defined."""
    function: Any = handler
    while isinstance(function, functools.partial):
        function = function.func
    if not inspect.isroutine(function):
        function = type(function).__call__
    try:
        return typing.get_type_hints(function)[name]
    except Exception as error:  # a NameError for a name the module does not define...
        raise InvalidArgument(
            f"the handler of {queue!r}: cannot read its type annotations ({error!r})"
        ) from None
