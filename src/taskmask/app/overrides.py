"""Settings changed from outside a config file: ``--set training.lr=0.01`` on the command line and
a compare variant's ``set:`` mapping. A dotted key walks the YAML mappings; in the ``tasks``
list a part names a task (``tasks.toxic.weight=2``). Values are read as YAML (``0.01`` a
number, ``[64, 64]`` a list, ``null``), then the whole config is validated as a file is."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from taskmask.errors import TaskmaskError


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as the dotted key and the YAML value; `TaskmaskError` naming ``text``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise TaskmaskError(f"--set {text!r}: expected KEY=VALUE, e.g. training.lr=0.01")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise TaskmaskError(f"--set {key}: the value {value!r} is not YAML ({detail})") from None


def set_dotted(raw: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    """Set ``raw[...]`` at ``dotted`` (mappings made on the way; list items picked by task
    name); `TaskmaskError` led by ``where`` when the path runs into something else."""
    parts = dotted.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            matches = [item for item in node if isinstance(item, dict) and item.get("name") == part]
            if not matches:
                raise TaskmaskError(f"{where}: no task named {part!r} for {dotted!r}")
            node = matches[0]
            continue
        if not isinstance(node, dict):
            raise TaskmaskError(f"{where}: {'.'.join(parts[:i])!r} is not a mapping")
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        raise TaskmaskError(f"{where}: cannot set {dotted!r}")
    node[parts[-1]] = value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``KEY=VALUE`` of ``overrides`` set, in order."""
    out = copy.deepcopy(dict(raw))
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(out, key, value, f"--set {key}")
    return out
