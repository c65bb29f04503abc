"""Records: dataclasses read from and written to a JSON object, for the files a run leaves behind (its report, its
epoch records). A key the object lacks takes the field's default, because a file saved before that field existed
must still load; a key the dataclass does not know is kept and written back, and a record read from a file writes back
the keys the file had, so reading and saving a report of any version changes nothing in it. Its own module so that
evaluate (Metrics), runs (BaseRef), events (EpochRecord) and report share one reader and one writer."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")
_READ_AS = "_read_as"
"""the attribute a record read from a file keeps its keys in: (keys the file had, keys this version does not know)"""


class Record:
    """Mixin for a dataclass: from_dict and to_dict. A subclass with nested records converts them in `_read`."""

    @classmethod
    def from_dict(cls: type[R], values: dict | None) -> R:
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        record = cls(**cls._read({k: v for k, v in values.items() if k in known}))
        # not a dataclass field: equality, repr and dataclasses.replace ignore it (a replaced record writes every key)
        object.__setattr__(record, _READ_AS, (frozenset(values), {k: v for k, v in values.items() if k not in known}))
        return record

    @classmethod
    def _read(cls, values: dict) -> dict:
        """The constructor's arguments from the file's known keys: subclasses turn nested objects into records."""
        return values

    def to_dict(self) -> dict:
        keys, unknown = getattr(self, _READ_AS, (None, {}))
        written = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            # a field the file lacked stays out while it holds its default: the file reads back as it was saved
            if keys is None or f.name in keys or value != _default(f):
                written[f.name] = plain(value)
        return {**written, **unknown}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def plain(value: Any) -> Any:
    """`value` as JSON holds it: records as objects, tuples as lists."""
    if isinstance(value, Record):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
