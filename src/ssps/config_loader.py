"""Loading YAML and dotted overrides onto a tree of documented dataclasses, with validation.

Generic: knows nothing of the project's sections (see `ssps.config` for the tree). Every
error is a `ConfigError` naming the key (dotted path) and the file it came from, raised
before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override that does not fit the config tree."""


# YAML 1.1 (PyYAML) reads 5e-5 and 1e3 as strings: it wants a dot in the mantissa
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
# A config is a few hundred values; aliases that expand past this are a "billion laughs"
MAX_YAML_VALUES = 100_000


def _expanded_size(node: yaml.Node, sizes: dict[int, float]) -> float:
    """Values a composed YAML node expands to once every alias is copied out (inf: a cycle)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = math.inf  # seen again before it is finished: a recursive alias
    if isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(item, sizes) for item in node.value)
    else:
        total = 1
    sizes[id(node)] = total
    return total


def safe_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load`, refusing documents whose aliases expand past MAX_YAML_VALUES."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise ConfigError(
                f"{source}: the YAML expands to more than {MAX_YAML_VALUES:,} values through "
                "its aliases (&anchor / *alias); refusing it"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _describe_type(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against the annotation `tp` and return it converted where lossless."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return build(tp, value, source, prefix=key)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        return _coerce(value, options[0], key, source)
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return {
            _coerce(k, key_tp, key, source): _coerce(v, val_tp, f"{key}.{k}", source)
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            number = float(value)
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{source}: '{key}' must be a finite number, got {value!r}")
            return number
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(
        f"{source}: '{key}' must be of type {_describe_type(tp)}, got {value!r}"
        f" ({type(value).__name__})"
    )


def build(cls: type, values: dict[str, Any], source: str, prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from a (partial) mapping; missing fields keep defaults."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{source}: unknown key '{where}{unknown[0]}'; valid keys here: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key, source)
        choices = fields[name].metadata.get("choices")
        if choices is not None and kwargs[name] not in choices:
            raise ConfigError(
                f"{source}: '{key}' must be one of {list(choices)}, got {kwargs[name]!r}"
            )
        _check_bounds(kwargs[name], fields[name].metadata, key, source)
    return cls(**kwargs)


def _check_bounds(value: Any, metadata: Any, key: str, source: str) -> None:
    """ConfigError unless a number (or each number of a list) is within the field's bounds."""
    low, high = metadata.get("minimum"), metadata.get("maximum")
    if low is None and high is None:
        return
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        if (low is not None and item < low) or (high is not None and item > high):
            if high is None:
                wanted = f">= {low}"
            elif low is None:
                wanted = f"<= {high}"
            else:
                wanted = f"in [{low}, {high}]"
            raise ConfigError(f"{source}: '{key}' must be {wanted}, got {item!r}")


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `update` into a copy of `base`."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """`a.b.c=value` -> {"a": {"b": {"c": value}}}, the value parsed as a YAML scalar/list."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value (e.g. trainer.epochs=3)")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}': bad key '{key}'")
    try:
        value = safe_yaml(raw, f"override '{text}'") if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{text}': cannot parse value ({err})") from err
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    try:
        data = safe_yaml(text, str(path)) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load(cls: type, path: str | Path | None, overrides: list[str] = ()) -> Any:
    """Defaults <- YAML file <- overrides, validated against `cls`; errors name key and file."""
    obj = build(cls, read_yaml(path), str(path)) if path else cls()
    values = dataclasses.asdict(obj)
    for text in overrides:
        update = parse_override(text)
        values = merge(values, update)
        build(cls, merge(dataclasses.asdict(cls()), update), f"override '{text}'")
    return build(cls, values, str(path) if path else "defaults")


def dump(obj: Any, path: str | Path) -> None:
    """Write a config tree as YAML (atomically), so the run can be reproduced from it."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(yaml.safe_dump(dataclasses.asdict(obj), sort_keys=False))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(f"{path}: cannot write the config ({err.strerror or err})") from None


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per field: dotted key, default and help (for `ssps config --help`-like output)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            lines.extend(describe(hints[f.name], prefix=f"{key}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"{key} = {default!r}  # {f.metadata.get('help', '')}")
    return lines
