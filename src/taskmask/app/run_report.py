"""What a run directory says about its run: ``metrics.json`` and the model card ``README.md``.

``metrics.json`` holds numbers or null only, so that every value casts to float and
``pandas.json_normalize`` reads it: ``{PART: {TASK: {METRIC: number | null}}}`` for each part
(``validation``, ``test``), and beside them ``"undefined": {PART: {TASK: {METRIC: reason}}}``
for the nulls. A task with one output has each metric once (``accuracy``, not also
``accuracy/toxic``, ``accuracy_macro`` and ``accuracy_macro_n_labels``). See
``docs/run_directory.md``.

The history is written in long form (`long_history`: one row per epoch and key, split into
``split``, ``task``, ``label``, ``metric``), whose size grows with the number of values and
not with the width of one row, and as a small wide table (`summary_history`): each task's
headline metric per split, the totals and the cross-task means.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taskmask._version import __version__
from taskmask.app.plots import history_tasks, main_metric
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


SPLITS = ("train", "val")
LONG_COLUMNS = ("epoch", "split", "task", "label", "metric", "value")


def key_parts(key: str) -> tuple[str, str, str, str]:
    """``(split, task, label, metric)`` of a history key: ``val/TASK/METRIC/LABEL``,
    ``train/TASK/loss``, ``val/loss``; keys without a split (``lr``, ``weight/TASK``,
    ``cosine/A/B``) are ``METRIC[/TASK[/LABEL]]``. Absent parts are empty strings."""
    parts = key.split("/")
    if parts[0] in SPLITS and len(parts) > 1:
        rest = parts[1:]
        if len(rest) == 1:
            return parts[0], "", "", rest[0]
        return parts[0], rest[0], "/".join(rest[2:]), rest[1]
    return "", "/".join(parts[1:2]), "/".join(parts[2:]), parts[0]


def history_key(split: str, task: str, label: str, metric: str) -> str:
    """The history key of its parts: the inverse of `key_parts`."""
    if split:
        return "/".join(p for p in (split, task, metric, label) if p)
    return "/".join(p for p in (metric, task, label) if p)


def long_history(history: pd.DataFrame) -> pd.DataFrame:
    """``history`` (one row per epoch, one column per key) in long form: one row per epoch
    and key, with the `LONG_COLUMNS`; an undefined value is NaN."""
    keys = [str(c) for c in history.columns if c != "epoch"]
    n_epochs = len(history)
    epochs = (
        history["epoch"].to_numpy(dtype=np.int64)
        if "epoch" in history
        else np.arange(1, n_epochs + 1)
    )
    parts = list(zip(*map(key_parts, keys), strict=True)) if keys else [(), (), (), ()]
    columns: dict[str, Any] = {"epoch": np.repeat(epochs, len(keys))}
    for name, values in zip(LONG_COLUMNS[1:5], parts, strict=True):
        columns[name] = pd.Categorical(np.tile(np.asarray(values, dtype=object), n_epochs))
    columns["value"] = (
        history[keys].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64).reshape(-1)
    )
    return pd.DataFrame(columns)


def wide_history(long: pd.DataFrame) -> pd.DataFrame:
    """A long history (`long_history`) back in wide form, one row per epoch."""
    keys = [
        history_key(*map(str, row)) for row in long[["split", "task", "label", "metric"]].values
    ]
    frame = pd.DataFrame({"epoch": long["epoch"].to_numpy(), "key": keys, "value": long["value"]})
    wide = frame.pivot(index="epoch", columns="key", values="value")
    wide = wide[list(dict.fromkeys(keys))].reset_index()
    wide.columns.name = None
    wide["epoch"] = wide["epoch"].astype(float)
    return wide


def summary_history(history: pd.DataFrame) -> pd.DataFrame:
    """The small wide table of ``history``: the keys of no task (``epoch``, ``lr``, the total
    losses), the cross-task means (``*/mean/*``) and each task's headline metric per split
    (`taskmask.app.plots.main_metric`; its loss if it has none)."""
    tasks = history_tasks(history)
    keep = [
        c
        for c in map(str, history.columns)
        if key_parts(c)[1] in ("", "mean") and not c.startswith(("weight/", "cosine/"))
    ]
    for task in tasks:
        metric = main_metric(history, task) or "loss"
        keep += [f"{s}/{task}/{metric}" for s in SPLITS if f"{s}/{task}/{metric}" in history]
    return history[list(dict.fromkeys(keep))]


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
