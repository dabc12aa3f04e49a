"""What a run directory says about its run: ``metrics.json`` and the model card ``README.md``.

``metrics.json`` holds numbers or null only, so that every value casts to float and
``pandas.json_normalize`` reads it: ``{PART: {TASK: {METRIC: number | null}}}`` for each part
(``validation``, ``test``), and beside them ``"undefined": {PART: {TASK: {METRIC: reason}}}``
for the nulls. A task with one output has each metric once (``accuracy``, not also
``accuracy/toxic``, ``accuracy_macro`` and ``accuracy_macro_n_labels``). See
``docs/run_directory.md``.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from taskmask._version import __version__
from taskmask.functional._metrics import MetricValue, Undefined, summary_keys
from taskmask.tasks._task import Task

Metrics = Mapping[str, Mapping[str, MetricValue]]
PACKAGES = ("torch", "numpy", "pandas", "scikit-learn", "safetensors", "pydantic")


def _redundant(key: str, values: Mapping[str, MetricValue], single: bool) -> bool:
    """Whether ``key`` repeats another key's value: a one-label task's ``K/label``, or the
    macro (and its label count) of a metric that has a plain key."""
    if "/" in key:
        return single and key.split("/", 1)[0] in values
    return any(
        key.endswith(suffix) and key.removesuffix(suffix) in values
        for suffix in ("_macro_n_labels", "_macro")
    )


def compact(values: Mapping[str, MetricValue]) -> dict[str, MetricValue]:
    """``values`` without the keys that repeat another (see `_redundant`)."""
    labels = {key.split("/", 1)[1] for key in values if "/" in key}
    single = len(labels) == 1
    return {k: v for k, v in values.items() if not _redundant(k, values, single)}


def metrics_document(parts: Mapping[str, Metrics]) -> dict[str, Any]:
    """The JSON document of ``parts`` (see the module docstring)."""
    document: dict[str, Any] = {}
    undefined: dict[str, dict[str, dict[str, str]]] = {}
    for part, by_task in parts.items():
        document[part] = {}
        for task, values in by_task.items():
            kept = compact(values)
            document[part][task] = {
                k: None if isinstance(v, Undefined) else float(v) for k, v in kept.items()
            }
            reasons = {k: v.reason for k, v in kept.items() if isinstance(v, Undefined)}
            if reasons:
                undefined.setdefault(part, {})[task] = reasons
    document["undefined"] = undefined
    return document


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_rows(files: Mapping[str, Path | None]) -> list[str]:
    rows = []
    for part, path in files.items():
        if path is None:
            continue
        paths = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        rows += [f"| {part} | `{p}` | `{file_sha256(p)}` |" for p in paths]
    return rows


def _task_rows(tasks: Sequence[Task]) -> list[str]:
    rows = []
    for task in tasks:
        if task.kind in ("binary", "multilabel"):
            thresholds = ", ".join(f"{t:g}" for t in task.thresholds())
        else:
            thresholds = "-"
        labels = ", ".join(task.output_names)
        rows.append(f"| {task.name} | {task.kind} | {labels} | {thresholds} | {task.weight:g} |")
    return rows


def _metric_rows(parts: Mapping[str, Metrics]) -> list[str]:
    rows = []
    for part, by_task in parts.items():
        for task, values in by_task.items():
            for key in summary_keys(values):
                value = values[key]
                text = (
                    f"undefined ({value.reason})"
                    if isinstance(value, Undefined)
                    else f"{value:.4g}"
                )
                rows.append(f"| {part} | {task} | {key} | {text} |")
    return rows


def _versions() -> str:
    found = [f"taskmask {__version__}", f"Python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def model_card(
    *,
    tasks: Sequence[Task],
    files: Mapping[str, Path | None],
    metrics: Mapping[str, Metrics],
    history: pd.DataFrame,
    epochs: int,
    best_epoch: int | None,
    seconds: float,
    command: str | None,
    split: str | None = None,
) -> str:
    """The run directory's ``README.md``: what was trained on what, and how well it did.
    ``split`` says how the validation rows were chosen, if they were split off."""
    run = len(history)
    stopped = f", stopped early (of {epochs})" if run < epochs else f" of {epochs}"
    best = (
        f"the weights are those of epoch {best_epoch} (early stopping restored them)"
        if best_epoch is not None
        else f"the weights are those of the last epoch, {run}"
    )
    lines = [
        "# Model card",
        "",
        f"Trained {run} epochs{stopped} in {seconds:.1f} s; {best}.",
        "",
        "## Tasks",
        "",
        "| task | kind | labels (outputs) | thresholds | weight |",
        "|---|---|---|---|---|",
        *_task_rows(tasks),
        "",
        "## Data",
        "",
        "| part | file | SHA-256 |",
        "|---|---|---|",
        *_data_rows(files),
        "",
        *([split, ""] if split else []),
        "## Metrics",
        "",
        "On observed labels only (all of them in `metrics.json`).",
        "",
        "| part | task | metric | value |",
        "|---|---|---|---|",
        *_metric_rows(metrics),
        "",
        "## Reproduce",
        "",
        f"Versions: {_versions()}.",
        "",
    ]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += ["The files of this directory are described in taskmask's docs/run_directory.md.", ""]
    return "\n".join(lines)
