"""Frozen dataclass configs loaded from YAML profiles in ``configs/``; one loader for every config.

Unknown keys and wrong types fail before any work starts, with one line naming the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ropelab.io import atomic_write_text

T = TypeVar("T")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclass fields."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown key {where}{unknown[0]!r} in {cls.__name__}; allowed: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kind = _dataclass_in(hints[name])
        if kind is not None and isinstance(value, Mapping):
            value = from_dict(kind, value, f"{where}{name}.")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad {cls.__name__} config{f' at {where[:-1]}' if where else ''}: {err}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def load_config(cls: type[T], source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> T:
    """Load ``cls`` from a YAML file, a profile name in ``configs/`` or a dict; ``overrides`` use dotted keys."""
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        path = resolve_profile(source)
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            # a bad file's content is a bad value, not a programming error: callers handle ValueError
            raise ValueError(f"{path} must hold a YAML mapping, got {type(data).__name__}")  # noqa: TRY004
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return from_dict(cls, data)


def resolve_profile(source: str | Path) -> Path:
    """A YAML path, or a profile name looked up as ``configs/<name>.yaml``."""
    path = Path(source)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ValueError(f"no config file at {str(path)!r}")
        return path
    candidate = CONFIG_DIR / f"{source}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ValueError(f"unknown profile {str(source)!r}; allowed: {', '.join(known)} or a .yaml path")
    return candidate


def save_config(obj: Any, path: str | Path) -> Path:
    """Write the resolved config beside a run's outputs (atomically)."""
    return atomic_write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to one level with dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``), as overrides use."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return arg
    return None
