"""Frozen dataclass configs loaded from YAML profiles in ``configs/``; one loader for every config.

Unknown keys and wrong types fail before any work starts, with one line naming the field. A profile may begin
with `extends: <profile>` and give only what differs (see :func:`read_profile`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ropelab.storage import atomic_write_text

T = TypeVar("T")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "", source: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclass fields.

    A value of the wrong scalar type (a string, a bool or a list where an int is wanted; YAML's ``true`` is a
    Python int too) is a ValueError naming ``source`` (the file) and the dotted field.
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{source}: " if source else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{prefix}unknown key {where}{unknown[0]!r} in {cls.__name__}; allowed: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kind = _dataclass_in(hints[name])
        if kind is not None and isinstance(value, Mapping):
            value = from_dict(kind, value, f"{where}{name}.", source)
        else:
            _check_scalar(hints[name], value, f"{prefix}field {where}{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{prefix}bad {cls.__name__} config{f' at {where[:-1]}' if where else ''}: {err}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def load_config(cls: type[T], source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> T:
    """Load ``cls`` from a YAML file, a profile name in ``configs/`` or a dict; ``overrides`` use dotted keys."""
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        path = resolve_profile(source)
        data = read_profile(path)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {dotted!r}: {key!r} is not a mapping of fields")  # noqa: TRY004
        node[leaf] = value
    return from_dict(cls, data, source="" if isinstance(source, Mapping) else str(path))


def read_profile(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A profile's mapping, with ``extends: <profile>`` resolved: the named profile (a name in the same folder, or
    a .yaml path relative to this file) is read first and this file's keys are merged over it, mapping by mapping
    (a list or a scalar replaces the parent's)."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        # a bad file's content is a bad value, not a programming error: callers handle ValueError
        raise ValueError(f"{path} must hold a YAML mapping, got {type(data).__name__}")  # noqa: TRY004
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent:
        raise ValueError(f"{path}: extends must be a profile name or a .yaml path, got {parent!r}")
    base = path.parent / (parent if parent.endswith((".yaml", ".yml")) else f"{parent}.yaml")
    if not base.is_file():
        raise ValueError(f"{path}: extends {parent!r}, which is not a profile in {path.parent}; "
                         f"{_allowed_in(path.parent)}")
    chain = (*seen, path.resolve())
    if base.resolve() in chain:
        raise ValueError(f"{path}: extends {parent!r}, which extends it back: "
                         f"{' -> '.join(p.name for p in (*chain, base.resolve()))}")
    return merged(read_profile(base, chain), data)


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``: a mapping in both is merged the same way; anything else in ``over`` wins."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = merged(out[key], value) if both else value
    return out


def read_yaml(path: str | Path) -> Any:
    """The content of a YAML file (None: empty as ``{}``); unreadable or malformed YAML is a ValueError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read config {str(path)!r}: {getattr(err, 'strerror', None) or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"config {str(path)!r} is not valid YAML: {problem}{where}") from None
    return {} if data is None else data


def resolve_profile(source: str | Path) -> Path:
    """A YAML path, or a profile name looked up as ``configs/<name>.yaml``."""
    path = Path(source)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ValueError(f"no config file at {str(path)!r}")
        return path
    candidate = CONFIG_DIR / f"{source}.yaml"
    if not candidate.is_file():
        folder = candidate.parent  # a profile "train/x" is looked up in configs/train/
        where = folder.relative_to(CONFIG_DIR.parent).as_posix() if folder.is_relative_to(CONFIG_DIR.parent) else folder
        raise ValueError(f"unknown profile {path.name!r} in {where}/; {_allowed_in(folder)}")
    return candidate


def _allowed_in(folder: Path) -> str:
    """What a missing profile could have been: the profiles in ``folder``, or a .yaml path."""
    known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    return f"allowed: {', '.join(known)} or a .yaml path" if known else "give the path of a .yaml file"


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


_SCALARS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _check_scalar(hint: Any, value: Any, what: str) -> None:
    """Raise ValueError when ``value`` does not fit a scalar ``hint`` (int, float, str, bool, or one of them | None);
    other hints (tuple, dict, list, ...) are left to the dataclass."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in args:
        return
    kinds = [a for a in args if a in _SCALARS]
    if not kinds or len(kinds) < len([a for a in args if a is not type(None)]):
        return
    for kind in kinds:
        if kind is bool and isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if kind is str and isinstance(value, str):
            return
    wanted = " or ".join(_SCALARS[k] for k in kinds) + (" or null" if type(None) in args else "")
    hint_text = " (YAML reads 1e-5 as a string: write 1.0e-5)" if float in kinds and isinstance(value, str) else ""
    raise ValueError(f"{what} must be {wanted}, got {value!r}{hint_text}")


def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return arg
    return None
