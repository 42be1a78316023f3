"""Validation of YAML values against typed dataclass fields: recipes and pass configs
share it, so every bad key or value is reported the same way."""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any

from inferc.core.errors import RecipeError


def coerce_value(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a type annotation; str Enums accept their values."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce_value(value, arg, where)
            except RecipeError as exc:
                errors.append(str(exc))
        raise RecipeError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise RecipeError(f"{where}: expected one of {', '.join(map(str, args))}, found {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, found {value!r}")
        inner = args[0] if args else Any
        return tuple(coerce_value(v, inner, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, found {value!r}")
        return dict(value)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        try:
            return annotation(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in annotation)
            raise RecipeError(f"{where}: expected one of {allowed}, found {value!r}") from None
    if annotation is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true or false, found {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, found {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, found {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, found {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        return build_dataclass(annotation, value, where)
    return value


def build_dataclass(cls: type, values: Any, where: str, lines: dict[str, int] | None = None) -> Any:
    """Instantiate a (frozen) dataclass from a mapping, naming unknown keys and bad values.

    `lines` maps a key to its line in the source file, for messages that point at it.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"{where}: expected a mapping, found {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    lines = lines or {}

    def at(key: str) -> str:
        line = lines.get(key)
        return f"{where}{'.' if where and not where.endswith(' ') else ''}{key}" + (f" (line {line})" if line else "")

    for key in values:
        if key not in fields:
            raise RecipeError(f"{at(key)}: unknown key '{key}'; allowed: {', '.join(fields)}")
    kwargs = {k: coerce_value(v, hints[k], at(k)) for k, v in values.items()}
    missing = [
        name for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise RecipeError(f"{where or 'recipe'}: missing required key '{missing[0]}'")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{where or 'recipe'}: {exc}") from exc
