"""Typed values from what people type: a form field, a flag or YAML 1.1 gives strings ('42', '1e-3', 'true');
coerce() turns them into the field's type. Its own module so that config (RunConfig's fields) and methods (peft's
option fields) both use it without importing each other."""

from __future__ import annotations

import types
import typing
from typing import Any


def coerce(value: Any, kind: Any, name: str) -> Any:
    """`value` as type `kind` (int, float, bool, str, list[str], dict, or Optional of one), accepting the strings
    a form field, a flag or YAML 1.1 gives ('42', '1e-3', 'true'). Raises ValueError naming the field."""
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)
    if optional:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    origin = typing.get_origin(kind) or kind
    if origin is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise ValueError(f"{name} must be true or false (got {value!r})")
    if origin is int:
        number = _number(value, name, "a whole number")
        if not float(number).is_integer():
            raise ValueError(f"{name} must be a whole number (got {value!r})")
        return int(number)
    if origin is float:
        return float(_number(value, name, "a number"))
    if origin is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list (got {value!r})")
        return [str(v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping, e.g. {{r: 8, lora_alpha: 16}} (got {value!r})")
        return value
    if origin is str:
        if isinstance(value, (dict, list, tuple)):
            raise ValueError(f"{name} must be a single value (got {value!r})")
        return str(value)
    return value


def _number(value: Any, name: str, what: str) -> float | int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {what} (got {value!r})")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip()) if any(c in value for c in ".eEn") else int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be {what} (got {value!r})")
