"""Frozen config dataclasses from JSON (config.json, `train --config`) and command lines, checked field by field."""

from __future__ import annotations

from dataclasses import MISSING, fields


def _is_like(value, default) -> bool:
    """Whether `value` (from JSON or a command line) has the type of a field whose default is `default`."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, tuple):  # JSON has lists; each item like the default's first
        return isinstance(value, (list, tuple)) and (not default or all(_is_like(v, default[0]) for v in value))
    return default is None or isinstance(value, type(default))


def field_type_errors(cls, d: dict) -> list[str]:
    """One line per value in `d` whose type is not its `cls` field's, judged by the field's default."""
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory()
                for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING}
    return [f"{key}={value!r} should be a {type(defaults[key]).__name__} like the default {defaults[key]!r}"
            for key, value in d.items() if key in defaults and not _is_like(value, defaults[key])]


def config_from_dict(cls, d: dict):
    """A frozen config dataclass from JSON: unknown keys and values of the wrong type are errors naming them; lists
    become tuples."""
    if not isinstance(d, dict):
        raise ValueError(f"a {cls.__name__} must be a JSON object of its fields, not {type(d).__name__} {d!r}")
    known = {f.name for f in fields(cls)}
    if unknown := sorted(set(d) - known):
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(known)}")
    if wrong := field_type_errors(cls, d):
        raise ValueError(f"{cls.__name__}: {'; '.join(wrong)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
