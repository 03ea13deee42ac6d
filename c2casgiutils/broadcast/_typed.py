"""Typed functions over the broadcast: arguments and return values travel as JSON and are rebuilt from hints.

Pydantic models (and anything pydantic can validate: dataclasses, datetimes, enums...) are serialized with
``to_jsonable_python`` and validated back with a ``TypeAdapter`` of the function's type hint, on the
receiving side for the parameters and on the calling side for the return value.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from c2casgiutils.broadcast.interface import RawAnswer
from c2casgiutils.broadcast.types import BroadcastResponse, ErrorAnswer, MissingAnswer

_LOGGER = logging.getLogger(__name__)


def default_channel(func: Callable[..., Any]) -> str:
    """The channel of a decorated function: its module and qualified name, the same in every process."""
    module = getattr(func, "__module__", None) or type(func).__module__
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"c2c_decorated_{module}.{name}"


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: fall back to untyped values
        _LOGGER.debug("No usable type hints on %r: values are passed as plain JSON", func, exc_info=True)
        return {}


class TypedFunction:
    """A function, its signature and the adapters that rebuild its arguments and its return value."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.signature = inspect.signature(func)
        for parameter in self.signature.parameters.values():
            if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.VAR_POSITIONAL):
                raise TypeError(
                    f"cannot broadcast {func!r}: parameter {parameter.name!r} cannot be passed by name "
                    "(positional-only and *args parameters are not supported)"
                )
        hints = _hints(func)
        self.parameter_adapters: dict[str, TypeAdapter[Any]] = {
            name: TypeAdapter(hints[name]) for name in self.signature.parameters if name in hints
        }
        self._var_keyword = next((p.name for p in self.signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)
        self.return_type: Any = hints.get("return", Any)
        self.response_model = response_model_for(self.return_type)

    def dump_arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments of a call, by name, as JSON-compatible data (TypeError on a wrong call, like Python)."""
        bound = self.signature.bind(*args, **kwargs)
        params: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if name == self._var_keyword:
                params.update(value)
            else:
                params[name] = value
        return dict(to_jsonable_python(params))

    def call(self, **params: Any) -> Any:
        """Run the function with arguments rebuilt from their hints (the handler side)."""
        arguments = {
            name: self.parameter_adapters[name].validate_python(value) if name in self.parameter_adapters else value
            for name, value in params.items()
        }
        return self.func(**arguments)

    def load_answer(self, raw: RawAnswer | MissingAnswer | None) -> BroadcastResponse[Any] | MissingAnswer:
        """Rebuild one answer with the function's return type (the caller side)."""
        return load_answer(raw, self.response_model, self.return_type)


def response_model_for(payload_type: Any) -> type[BroadcastResponse[Any]]:
    """``BroadcastResponse[payload_type]``, the type being known only at run time."""
    model: type[BroadcastResponse[Any]] = typing.cast(Any, BroadcastResponse)[payload_type]
    return model


def load_answer(
    raw: RawAnswer | MissingAnswer | None, response_model: type[BroadcastResponse[Any]], return_type: Any = Any
) -> BroadcastResponse[Any] | MissingAnswer:
    """A raw answer as a BroadcastResponse, an ErrorAnswer, or a MissingAnswer (None)."""
    if raw is None:
        return MissingAnswer()
    if isinstance(raw, MissingAnswer):
        return raw
    if not raw.ok:
        return ErrorAnswer(
            hostname=raw.hostname,
            pid=raw.pid,
            error_type=raw.error_type or "Exception",
            message=raw.error_message or "",
        )
    try:
        return response_model.model_validate({"hostname": raw.hostname, "pid": raw.pid, "payload": raw.payload})
    except ValidationError as error:
        return ErrorAnswer(
            hostname=raw.hostname,
            pid=raw.pid,
            error_type="ValidationError",
            message=f"the answer does not match {return_type!r}: {error}",
        )
