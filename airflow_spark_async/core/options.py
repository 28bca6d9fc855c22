"""Backend options and connection extras, parsed once, with messages that name the option.

Why one module: backend options arrive from DAG code (Python values), from trigger kwargs
(JSON) and from connection extras (often strings: ``"verify": "false"``, ``"timeout": "30"``).
Each backend used to carry its own ``_truthy``/``_flag``/``float(...)`` — with different
spellings accepted and different messages. Here each kind of value has one parser, and
:class:`BackendOptions` applies them to a dataclass's fields from their type hints, so that a
backend declares its options as fields and its ``validate_options`` is one line::

    @dataclasses.dataclass(frozen=True)
    class LivyOptions(BackendOptions):
        what: ClassVar[str] = "Livy backend options"
        page_size: int = option(100, ge=1, le=10_000)
        verify_ssl: bool = True

    LivyOptions.from_options({"page_size": "50", "verify_ssl": "false"})  # converted, checked

Every parser raises :class:`~airflow_spark_async.core.errors.ConfigurationError`, so bad input
fails at DAG parse time (the operator validates its options) with a message that says what to fix.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, Union

from airflow_spark_async.core.errors import ConfigurationError

__all__ = [
    "BackendOptions",
    "option",
    "parse_bool",
    "parse_float",
    "parse_int",
    "parse_str",
    "parse_str_list",
]

OptionsT = TypeVar("OptionsT", bound="BackendOptions")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def parse_bool(value: Any, name: str) -> bool:
    """``True``/``False`` from a bool, ``0``/``1`` or a string such as ``"true"``, ``"off"``, ``"Yes"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ConfigurationError(f"{name} must be true or false, got {value!r}")


def _bounds(name: str, value: float, kind: str, gt: float | None, ge: float | None, le: float | None) -> None:
    for ok, text in ((gt is None or value > gt, f"> {gt}"), (ge is None or value >= ge, f">= {ge}"),
                     (le is None or value <= le, f"<= {le}")):
        if not ok:
            raise ConfigurationError(f"{name} must be {kind} {text}, got {value!r}")


def parse_float(value: Any, name: str, *, gt: float | None = None, ge: float | None = None,
                le: float | None = None) -> float:
    """A finite number from a number or a numeric string, within the bounds given (``gt=0``: > 0)."""
    number = math.nan
    if not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            number = float(value)
        except ValueError:
            pass
    if not math.isfinite(number):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    _bounds(name, number, "a number", gt, ge, le)
    return number


def parse_int(value: Any, name: str, *, ge: int | None = None, le: int | None = None) -> int:
    """An integer from an int, a whole float (``3.0``, as JSON may give) or a string of digits."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None:
        raise ConfigurationError(f"{name} must be an integer, got {value!r}")
    _bounds(name, number, "an integer", None, ge, le)
    return number


def parse_str(value: Any, name: str, *, choices: Collection[str] | None = None) -> str:
    """A non-empty string (stripped); with ``choices``, one of them."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    text = value.strip()
    if choices is not None and text not in choices:
        raise ConfigurationError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return text


def parse_str_list(value: Any, name: str, *, comma_separated: bool = False) -> list[str]:
    """A list of strings from a list or tuple (``None``: empty).

    A plain string is refused — ``args="a b"`` is a mistake, not one argument — unless
    ``comma_separated``, where ``"a, b"`` (a connection extra typed in a form) is ``["a", "b"]``.
    """
    if value is None:
        return []
    if isinstance(value, str):
        if comma_separated:
            return [part.strip() for part in value.split(",") if part.strip()]
        raise ConfigurationError(f"{name} must be a list of strings, not the string {value!r}")
    if not isinstance(value, Sequence) or isinstance(value, (bytes, bytearray)):
        raise ConfigurationError(f"{name} must be a list of strings, got {type(value).__name__}")
    return [str(item) for item in value]


def option(default: Any = dataclasses.MISSING, *, gt: float | None = None, ge: float | None = None,
           le: float | None = None, choices: Collection[str] | None = None) -> Any:
    """A :class:`BackendOptions` field with bounds (numbers) or choices (strings), checked on construction.

    For scalar defaults; a list or mapping option takes ``dataclasses.field(default_factory=list)``.
    """
    metadata = {key: value for key, value in (("gt", gt), ("ge", ge), ("le", le), ("choices", choices))
                if value is not None}
    return dataclasses.field(default=default, metadata=metadata)


def _convert(value: Any, hint: Any, name: str, meta: Mapping[str, Any]) -> Any:
    """``value`` parsed as the type ``hint`` says; types without a parser pass through unchanged."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            if len(args) < len(typing.get_args(hint)):
                return None
            raise ConfigurationError(f"{name} is required")
        return _convert(value, args[0], name, meta) if len(args) == 1 else value
    if hint is bool:
        return parse_bool(value, name)
    if hint is int:
        return parse_int(value, name, ge=meta.get("ge"), le=meta.get("le"))
    if hint is float:
        return parse_float(value, name, gt=meta.get("gt"), ge=meta.get("ge"), le=meta.get("le"))
    if hint is str:
        return parse_str(value, name, choices=meta.get("choices"))
    if origin in (list, tuple, Sequence) and typing.get_args(hint)[:1] == (str,):
        items = parse_str_list(value, name)
        return items if origin is list else tuple(items)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{name} must be a mapping, got {type(value).__name__}")
        return dict(value)
    return value


#: the resolved type hints of each options class, read once
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """Base of a backend's options: a frozen dataclass whose fields are the options.

    On construction every field is converted and checked by its type hint — ``bool``, ``int``,
    ``float``, ``str``, ``list[str]``/``tuple[str, ...]``, ``Mapping``/``dict``, each optionally
    ``| None`` — and by its :func:`option` bounds; other types are kept as given. A subclass with a
    ``__post_init__`` of its own calls ``super().__post_init__()`` first.

    :cvar what: names the options in error messages (``"Livy backend options"``).
    """

    what: ClassVar[str] = "backend options"

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            converted = _convert(value, hints.get(field.name, Any), f"{self.what}: {field.name}", field.metadata)
            if converted is not value:
                object.__setattr__(self, field.name, converted)

    @classmethod
    def from_options(cls: type[OptionsT], options: Mapping[str, Any] | None) -> OptionsT:
        """The options of ``options`` (a mapping from DAG code or trigger kwargs); unknown keys are
        refused with the list of known ones, so a misspelt option fails instead of being ignored."""
        data = dict(options or {})
        known = sorted(f.name for f in dataclasses.fields(cls) if f.init)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigurationError(f"{cls.what}: unknown option(s) {unknown}; known: {known}")
        return cls(**data)

    def to_dict(self, *, defaults: bool = True) -> dict[str, Any]:
        """The JSON-safe form carried in trigger kwargs; without ``defaults``, only the options
        that differ from their defaults (shorter kwargs, and defaults may improve in a release)."""
        data = dataclasses.asdict(self)
        if defaults:
            return data
        return {f.name: data[f.name] for f in dataclasses.fields(self) if data[f.name] != _default(f)}


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default  # MISSING when there is none: never equal to a value
