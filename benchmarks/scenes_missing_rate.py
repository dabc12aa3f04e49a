"""The missing-rate sweep on seed 002's natural scenes: masked training against filling the
missing labels as negative, dropping incomplete images and five single-task CNNs, as more and
more of the labels go missing.

    python benchmarks/scenes_missing_rate.py                   # full run: 9 cells x 4 methods
    python benchmarks/scenes_missing_rate.py --smoke           # a tiny slice in seconds (tests)
    python benchmarks/scenes_missing_rate.py --out DIR         # results.json / .md / plot
    python benchmarks/scenes_missing_rate.py --data-dir PATH   # default: ../shared/data

Data and split as benchmarks/scenes.py (1,400 train / 200 validation / 400 test, no label
missing). Of the development labels (train and validation), a fraction ``rate`` in {0, 25,
50, 75, 90 %} is hidden per label, ``mcar`` (at random) or ``mnar`` (positives hidden twice as
often), by `taskmask.data.missingness.hide_labels`; the test labels are all kept.

Methods, all early-stopped on the (equally thinned) validation labels:

- ``masked``: one 5-label CNN, hidden labels masked out of the loss;
- ``fill_negative``: the same CNN with every hidden training label set to 0;
- ``drop_rows``: the same CNN trained only on the images that still have all 5 labels;
- ``single_task``: 5 binary CNNs, each on the images that have its label.

Metrics: mean test ROC-AUC over the 5 labels, and macro F1 at per-label thresholds tuned on the
thinned validation labels. A label a method has no model for (single_task: no image left, or
one class only; drop_rows: fewer than 2 complete images) gets a constant score and no positive
prediction: ROC-AUC 0.5, F1 0. The tables count those labels in brackets.

With nothing hidden, filling and dropping change nothing: the 0 % cell trains the masked model
once and reports it for all three. To fit the other ~70 trainings in 15 minutes on one CPU
thread, the sweep runs two seeds on 32x32 images with a smaller CNN than benchmarks/scenes.py
(`SWEEP`; see benchmarks/README.md).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    SMOKE_SWEEP_RATES,
    SWEEP_METHODS,
    SWEEP_RATES,
    benchmark_parser,
    chosen_settings,
    data_missing,
    sweep_cells,
    write_results,
)
from _scenes import (
    LABELS,
    SMOKE,
    Settings,
    evaluate_thresholds,
    load_scenes,
    scene_split,
    train,
)

from taskmask import Task
from taskmask.data.missingness import MECHANISMS
from taskmask.data.splits import Split
from taskmask.functional import fit_thresholds
from taskmask.predict import predict

SWEEP = Settings(size=32, channels=(8, 16, 32), pool=2, epochs=15, patience=4, seeds=(0, 1))
SMOKE_SWEEP = replace(SMOKE, n_rows=200)
METRICS = (("roc_auc_macro", "mean test ROC-AUC"), ("f1_macro", "macro F1, tuned thresholds"))


def multilabel_probs(
    X: torch.Tensor,
    y_train: np.ndarray,
    y_val: np.ndarray,
    rows: Any,
    settings: Settings,
    seed: int,
) -> np.ndarray:
    """Probabilities ``(N, 5)`` for every image from one 5-label CNN."""
    task = Task(name="scene", kind="multilabel", labels=LABELS)
    result = train(X, y_train, y_val, rows, task, settings, seed)
    return predict(result.model, X)["scene"].scores


def single_task_probs(
    X: torch.Tensor,
    y_train: np.ndarray,
    y_val: np.ndarray,
    parts: Split,
    settings: Settings,
    seed: int,
) -> tuple[np.ndarray, list[bool]]:
    """Probabilities ``(N, 5)`` from one binary CNN per label, each trained on the images that
    have that label; a label with nothing to learn from stays at 0 (no model)."""
    probs = np.zeros((len(X), len(LABELS)))
    has_model = []
    for j, name in enumerate(LABELS):
        seen, val_seen = ~np.isnan(y_train[:, j]), ~np.isnan(y_val[:, j])
        usable = len(np.unique(y_train[seen, j])) == 2 and bool(val_seen.any())
        has_model.append(usable)
        if usable:
            rows = (parts.train[seen], parts.validation[val_seen])
            task = Task(name=name, kind="binary")
            result = train(X, y_train[seen, j], y_val[val_seen, j], rows, task, settings, seed)
            probs[:, j] = predict(result.model, X)[name].scores[:, 0]
    return probs, has_model


def method_probs(
    method: str, X: torch.Tensor, Y_thin: np.ndarray, parts: Split, settings: Settings, seed: int
) -> tuple[np.ndarray, list[bool]]:
    """Every image's probabilities from ``method`` trained on the thinned labels ``Y_thin``,
    and which labels it has a model for."""
    y_train, y_val = Y_thin[parts.train], Y_thin[parts.validation]
    rows = (parts.train, parts.validation)
    every = [True] * len(LABELS)
    if method == "single_task":
        return single_task_probs(X, y_train, y_val, parts, settings, seed)
    if method == "fill_negative":
        y_train = np.nan_to_num(y_train, nan=0.0)
    elif method == "drop_rows":
        complete = ~np.isnan(y_train).any(axis=1)
        if complete.sum() < 2:  # BatchNorm needs two rows to train on
            return np.zeros((len(X), len(LABELS))), [False] * len(LABELS)
        rows, y_train = (parts.train[complete], parts.validation), y_train[complete]
    return multilabel_probs(X, y_train, y_val, rows, settings, seed), every


def run_cell(
    method: str,
    X: torch.Tensor,
    Y: np.ndarray,
    Y_thin: np.ndarray,
    parts: Split,
    settings: Settings,
    seed: int,
) -> dict[str, Any]:
    """Test ROC-AUC per label, mean ROC-AUC and macro F1 (0.5 and tuned) of one method."""
    probs, has_model = method_probs(method, X, Y_thin, parts, settings, seed)
    y_val = Y_thin[parts.validation]
    tuned = fit_thresholds(probs[parts.validation], np.nan_to_num(y_val), ~np.isnan(y_val))
    # no model: its constant 0 stays below 0.5, so it predicts no positive
    tuned = tuple(t if ok else 0.5 for t, ok in zip(tuned, has_model, strict=True))
    scores = evaluate_thresholds(probs[parts.test], Y[parts.test], tuned)
    return {
        "auc": {name: scores["0.5"][f"roc_auc/{name}"] for name in LABELS},
        "roc_auc_macro": scores["0.5"]["roc_auc_macro"],
        "f1_macro": scores["tuned"]["f1_macro"],
        "f1_macro_at_0.5": scores["0.5"]["f1_macro"],
        "no_model": int(len(LABELS) - sum(has_model)),
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mechanism, rate and method: mean (and std over seeds) of each metric; the 0 % runs
    count for both mechanisms."""
    rows = []
    for mechanism in MECHANISMS:
        for rate in sorted({r["rate"] for r in runs}):
            for method in SWEEP_METHODS:
                chosen = [
                    r
                    for r in runs
                    if (r["method"], r["rate"]) == (method, rate)
                    and (r["mechanism"] == mechanism or rate == 0.0)
                ]
                if not chosen:
                    continue
                row = {"mechanism": mechanism, "rate": rate, "method": method}
                for metric, _ in METRICS:
                    values = [r[metric] for r in chosen]
                    row[metric] = float(np.mean(values))
                    row[f"{metric}_std"] = float(np.std(values)) if len(values) > 1 else math.nan
                row["no_model"] = float(np.mean([r["no_model"] for r in chosen]))
                rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], n_seeds: int) -> str:
    rates = sorted({r["rate"] for r in rows})
    lines = []
    for metric, title in METRICS:
        lines += [
            f"{title} over the 5 labels ({n_seeds} seed(s)); in brackets, labels with no model "
            "(ROC-AUC 0.5, F1 0).",
            "",
            "| mechanism | method | " + " | ".join(f"{rate:.0%} hidden" for rate in rates) + " |",
            "|---|---" + "|---" * len(rates) + "|",
        ]
        for mechanism in MECHANISMS:
            for method in SWEEP_METHODS:
                cells = []
                for rate in rates:
                    key = (mechanism, rate, method)
                    match = [r for r in rows if (r["mechanism"], r["rate"], r["method"]) == key]
                    if not match:
                        cells.append("")
                        continue
                    r = match[0]
                    std = r[f"{metric}_std"]
                    text = f"{r[metric]:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")
                    cells.append(text + (f" [{r['no_model']:g}]" if r["no_model"] else ""))
                lines.append(f"| {mechanism} | {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows: mean ROC-AUC and macro F1; columns: mechanisms; a line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7), constrained_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(METRICS), len(MECHANISMS), sharex=True, sharey="row")
    titles = {"mcar": "missing completely at random", "mnar": "not at random (positives 2x)"}
    for (metric, label), row in zip(METRICS, axes, strict=True):
        for ax, mechanism in zip(row, MECHANISMS, strict=True):
            for method in SWEEP_METHODS:
                line = [r for r in rows if r["mechanism"] == mechanism and r["method"] == method]
                ax.plot(
                    [100 * r["rate"] for r in line],
                    [r[metric] for r in line],
                    marker="o",
                    label=method,
                )
            if metric == METRICS[0][0]:
                ax.set_title(f"Natural scenes, {titles[mechanism]}")
            ax.grid(alpha=0.3)
            row[0].set_ylabel(label)
        row[0].legend()
    for ax in axes[-1]:
        ax.set_xlabel("development labels hidden (%)")
    axes[0][0].axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axes[0][1].axhline(0.5, color="grey", linestyle=":", linewidth=1)
    figure.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    args = benchmark_parser(__doc__, "scenes_missing_rate", seeds=len(SWEEP.seeds)).parse_args(argv)
    if data_missing(args.data_dir / "miml_scene" / "miml_images.tar", "miml_scene", args.data_dir):
        return 0
    settings = chosen_settings(args, SWEEP, SMOKE_SWEEP)
    rates = SMOKE_SWEEP_RATES if args.smoke else SWEEP_RATES
    start = time.perf_counter()
    scenes = load_scenes(args.data_dir, settings.size, settings.n_rows)
    X, Y = scenes.inputs, scenes.labels
    parts = scene_split(len(X))
    print(
        f"{len(X)} images at {settings.size}x{settings.size}; {time.perf_counter() - start:.1f} s"
    )
    development = np.concatenate([parts.train, parts.validation])
    runs = []
    for seed in settings.seeds:
        for mechanism, rate, Y_thin in sweep_cells(Y, development, seed, rates):
            complete = not np.isnan(Y_thin[development]).any()
            done: dict[str, Any] = {}
            for method in SWEEP_METHODS:
                t0 = time.perf_counter()
                if complete and method in ("fill_negative", "drop_rows"):
                    cell = done["masked"]  # nothing hidden: the masked run, trained once
                else:
                    cell = run_cell(method, X, Y, Y_thin, parts, settings, seed)
                done[method] = cell
                seconds = time.perf_counter() - t0
                key = {"seed": seed, "mechanism": mechanism, "rate": rate, "method": method}
                runs.append({**key, **cell, "seconds": seconds})
                print(
                    f"seed {seed} {mechanism} {rate:4.0%} {method:13s} ROC-AUC "
                    f"{cell['roc_auc_macro']:.4f}  macro F1 {cell['f1_macro']:.4f}  "
                    f"no model {cell['no_model']}  ({seconds:.0f} s)",
                    flush=True,
                )
    rows = summarise(runs)
    table = markdown(rows, len(settings.seeds))
    total = time.perf_counter() - start
    print(table)
    print(f"total {total:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / "scenes_missing_rate.png")
    report = {
        "settings": asdict(settings),
        "rates": list(rates),
        "total_seconds": total,
        "threads": torch.get_num_threads(),
        "summary": rows,
        "runs": runs,
    }
    write_results(args.out, report, table)
    print(f"wrote results.json, results.md and scenes_missing_rate.png to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
