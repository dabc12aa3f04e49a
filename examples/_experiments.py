"""What the seed 003 / 004 experiment scripts share: finding the data, the HMP loader, tables.

Used by ``examples/hmp_auxiliary.py``, ``examples/utkface_age_gender.py`` and
``benchmarks/weighting.py``; not part of the taskmask package. The data live in
``../shared/data`` next to the repository and are never copied into it: archives are unpacked
once into a cache folder outside the repository (``~/.cache/taskmask`` by default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

import taskmask
from taskmask.data.auxiliary import auxiliary_targets
from taskmask.data.images import extract_archive
from taskmask.data.series import HMP_NAME_PATTERN, read_series_folder
from taskmask.functional import Undefined

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"

# HMP: Eat_soup (3 trials) and Eat_meat (5) become one class "Eat" (8 trials), so that every
# class keeps at least one trial in each of the train, validation and test splits.
HMP_MERGE = {"Eat_soup": "Eat", "Eat_meat": "Eat"}


# --------------------------------------------------------------------------- command line


def base_parser(description: str, *, out: str) -> argparse.ArgumentParser:
    """Options every experiment script has."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=Path(out), help="default: %(default)s")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where archives are unpacked (outside the repo); default: ~/.cache/taskmask",
    )
    parser.add_argument("--smoke", action="store_true", help="seconds-long run on a tiny slice")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the data splits")
    return parser


def data_missing(data_dir: Path, needed: Iterable[str]) -> bool:
    """True (after printing why) when a file the experiment needs is not under ``data_dir``."""
    absent = [name for name in needed if not (data_dir / name).is_file()]
    if absent:
        print(
            f"SKIPPED: {data_dir / absent[0]} not found; this experiment needs the shared data "
            f"directory (see ../shared/data/README.md) or --data-dir",
            flush=True,
        )
    return bool(absent)


def setup(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)


def environment(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """What a reader needs to repeat or judge a timing."""
    return {
        "command": " ".join(["python", *map(str, sys.argv)]),
        "seconds": round(seconds, 1),
        "threads": args.threads,
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "taskmask": taskmask.__version__,
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------- HMP


@dataclass
class HMPData:
    """HMP ADL trials cut to one length, with their classes and one stratified split."""

    inputs: torch.Tensor  # (N, 3, length) coded accelerometer values 0..63
    activity: np.ndarray  # (N,) class names, Eat_* merged
    lengths: np.ndarray  # (N,) samples before cropping / padding
    rows: np.ndarray  # the trials in use (all but in smoke runs)
    train: np.ndarray  # row indices
    val: np.ndarray
    test: np.ndarray


def load_hmp(
    data_dir: Path,
    cache_dir: Path | None,
    *,
    length: int,
    crop: str,
    split_seed: int,
    per_class: int | None = None,
) -> HMPData:
    """Read every trial and crop it (``crop``: its first or its centre samples) or zero-pad it
    at the end to ``length``; split as `split_hmp` does. ``per_class`` keeps only the first
    trials of each class (smoke runs)."""
    root = extract_archive(data_dir / "hmp_adl" / "HMP_Dataset.tar.gz", cache_dir)
    inputs, meta = read_series_folder(
        root / "HMP_Dataset",
        pattern="*/*.txt",
        length=length,
        crop=crop,  # type: ignore[arg-type]
        name_pattern=HMP_NAME_PATTERN,
    )
    activity = meta["folder"].replace(HMP_MERGE).to_numpy()
    rows = np.arange(len(activity))
    if per_class is not None:
        rows = np.concatenate([rows[activity == c][:per_class] for c in np.unique(activity)])
    empty = np.empty(0, dtype=np.int64)
    data = HMPData(inputs, activity, meta["length"].to_numpy(), rows, empty, empty, empty)
    return split_hmp(data, split_seed)


def split_hmp(
    data: HMPData, split_seed: int, *, test_size: float = 0.25, val_size: float = 0.2
) -> HMPData:
    """``data`` with a new split of its trials, stratified by activity: ``test_size`` held
    out, then ``val_size`` of the rest for validation (503 / 126 / 210 trials in full)."""
    rows, activity = data.rows, data.activity
    trval, test = train_test_split(
        rows, test_size=test_size, stratify=activity[rows], random_state=split_seed
    )
    train, val = train_test_split(
        trval, test_size=val_size, stratify=activity[trval], random_state=split_seed
    )
    return replace(data, train=train, val=val, test=test)


def hmp_aux_targets(data: HMPData, generator: str, *, fourier_k: int) -> np.ndarray:
    """A generator's targets per trial, computed on the samples the network sees but without
    the zero padding (padding would make std and the sum of changes mostly measure the length),
    then z-scored per output with training-split statistics. ``(N, k)`` float32."""
    window = data.inputs.shape[2]
    options = {"k": fourier_k} if generator == "fourier" else {}
    rows = [
        auxiliary_targets(data.inputs[i : i + 1, :, : min(int(n), window)], generator, **options)
        for i, n in enumerate(data.lengths)
    ]
    values = torch.cat(rows).double().numpy()
    mean = values[data.train].mean(axis=0)
    std = values[data.train].std(axis=0)
    return ((values - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


# --------------------------------------------------------------------------- results


def metric_value(metrics: dict[str, Any], key: str) -> float:
    value = metrics.get(key, Undefined("absent"))
    return float("nan") if isinstance(value, Undefined) else float(value)


def weighted_f1(metrics: dict[str, Any]) -> float:
    """Support-weighted F1 over classes (scikit-learn's ``average="weighted"``, what the seed's
    ``classification_report`` printed as "avg / total") from `taskmask.evaluate`'s per-class
    ``f1/`` and ``support/`` entries; a class never predicted nor observed counts as F1 0."""
    total, weighted = 0.0, 0.0
    for key, support in metrics.items():
        if key.startswith("support/") and float(support) > 0:
            f1 = metrics[f"f1/{key.removeprefix('support/')}"]
            weighted += float(support) * (0.0 if isinstance(f1, Undefined) else float(f1))
            total += float(support)
    return weighted / total if total else float("nan")


def summarize(results: pd.DataFrame, by: Sequence[str] = ("variant",)) -> pd.DataFrame:
    """Mean, sample std and count over seeds of every numeric column but ``seed``; one row per
    ``by`` group, columns ``METRIC mean`` / ``METRIC std`` and ``n``, groups in first-seen order."""
    metrics = [c for c in results.columns if c not in (*by, "seed") and _numeric(results[c])]
    grouped = results.groupby(list(by), sort=False)
    summary = grouped[metrics].agg(["mean", "std"])
    summary.columns = [f"{metric} {stat}" for metric, stat in summary.columns]
    summary["n"] = grouped.size()
    return summary.reset_index()


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """``(mean(a) - mean(b), two-sided Welch t-test p-value)`` over the non-NaN values; p is
    NaN with fewer than 2 values on a side or no spread at all."""
    from scipy.stats import ttest_ind

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not len(a) or not len(b):
        return float("nan"), float("nan")
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return diff, float("nan")
    return diff, float(ttest_ind(a, b, equal_var=False).pvalue)


def compare_to(
    results: pd.DataFrame, reference: str, metrics: Sequence[str], *, by: str = "variant"
) -> pd.DataFrame:
    """For every variant and metric: the difference of means to ``reference``, the pooled
    standard deviation and the Welch p-value."""
    rows = []
    ref = results[results[by] == reference]
    for variant, part in results.groupby(by, sort=False):
        if variant == reference:
            continue
        row: dict[str, Any] = {by: variant}
        for metric in metrics:
            diff, p = welch(part[metric].to_numpy(), ref[metric].to_numpy())
            pooled = float(np.sqrt((part[metric].var() + ref[metric].var()) / 2))
            row |= {f"{metric} diff": diff, f"{metric} pooled std": pooled, f"{metric} p": p}
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float | np.floating):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown(frame: pd.DataFrame, *, digits: int = 3) -> str:
    """A pipe table; ``METRIC mean`` / ``METRIC std`` column pairs become one ``mean ± std``."""
    columns: list[tuple[str, Any]] = []
    names = list(frame.columns)
    for name in names:
        if name.endswith(" std") and name.removesuffix(" std") + " mean" in names:
            continue
        if name.endswith(" mean") and name.removesuffix(" mean") + " std" in names:
            base = name.removesuffix(" mean")
            columns.append((base, (name, f"{base} std")))
        else:
            columns.append((name, name))
    lines = ["| " + " | ".join(title for title, _ in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for _, row in frame.iterrows():
        cells = []
        for _, source in columns:
            if isinstance(source, tuple):
                mean, std = row[source[0]], row[source[1]]
                text = _cell(mean, digits)
                cells.append(
                    text if pd.isna(std) or pd.isna(mean) else f"{text} ± {_cell(std, digits)}"
                )
            else:
                cells.append(_cell(row[source], digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_bars(
    results: pd.DataFrame, metrics: Sequence[str], path: Path, *, by: str = "variant"
) -> Path:
    """One panel per metric: each seed as a grey dot, mean ± std per variant in black (the axis
    is fitted to the values, not started at 0, so that seed noise stays visible)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    variants = list(dict.fromkeys(results[by]))
    figure = Figure(figsize=(max(4.0, 0.6 * len(variants) + 1.5) * len(metrics), 4.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for i, variant in enumerate(variants):
            values = results.loc[results[by] == variant, metric].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            if not len(values):
                continue
            ax.plot(np.full(len(values), i + 0.15), values, ".", color="0.55", markersize=5)
            spread = values.std(ddof=1) if len(values) > 1 else 0.0
            ax.errorbar(i, values.mean(), yerr=spread, fmt="o", color="k", capsize=4)
        ax.set_xticks(np.arange(len(variants)), variants, rotation=35, ha="right")
        ax.set_xlim(-0.5, len(variants) - 0.5)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    figure.subplots_adjust(bottom=0.3, wspace=0.3)
    figure.savefig(path, dpi=100)
    return path


def write_outputs(
    out: Path,
    *,
    title: str,
    results: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    notes: Sequence[str],
    info: dict[str, Any],
) -> list[Path]:
    """``results.csv`` (one row per run), ``<name>.csv`` per table, ``summary.md`` (title,
    tables, notes, environment) and ``run.json`` (the environment)."""
    paths = [out / "results.csv"]
    results.to_csv(paths[0], index=False)
    parts = [f"# {title}\n"]
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
        paths.append(out / f"{name}.csv")
        parts += [f"## {name}\n", markdown(table)]
    parts += [
        *(f"- {note}" for note in notes),
        "",
        f"Run: `{info['command']}`, {info['seconds']} s",
    ]
    (out / "summary.md").write_text("\n".join(parts) + "\n", encoding="utf-8")
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return [*paths, out / "summary.md", out / "run.json"]


def finish(
    args: argparse.Namespace,
    seconds: float,
    *,
    title: str,
    results: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    notes: Sequence[str],
    plot: Path,
) -> None:
    """`write_outputs` with the run's `environment`, then each table and the files written
    on stdout."""
    info = environment(args, seconds)
    paths = write_outputs(
        args.out, title=title, results=results, tables=tables, notes=notes, info=info
    )
    for name, table in tables.items():
        print(f"\n{name}\n{markdown(table)}")
    print(f"wrote {', '.join(str(p) for p in [*paths, plot])} in {info['seconds']} s")


class Clock:
    """Wall time since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


__all__ = [
    "DATA_DIR",
    "Clock",
    "HMPData",
    "base_parser",
    "compare_to",
    "data_missing",
    "environment",
    "finish",
    "hmp_aux_targets",
    "load_hmp",
    "markdown",
    "metric_value",
    "plot_bars",
    "setup",
    "split_hmp",
    "summarize",
    "weighted_f1",
    "welch",
    "write_outputs",
]
