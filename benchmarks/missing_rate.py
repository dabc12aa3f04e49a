"""The missing-rate sweep on Tox21: how four ways of handling missing labels hold up as more of
the observed training labels are hidden, at random and not at random.

    python benchmarks/missing_rate.py              # full sweep on Tox21's random split
    python benchmarks/missing_rate.py --smoke      # a 300-molecule slice in seconds (tests)
    python benchmarks/missing_rate.py --out DIR    # results.json, results.md, missing_rate.png

Data, features, trunk and optimiser are those of benchmarks/tox21.py (its `Settings`), on its
80/10/10 random split. Of the labels observed in the training and validation parts (Tox21's
own 17 % stay missing), a fraction ``rate`` in {0, 25, 50, 75, 90 %} is hidden, per assay:

``mcar`` (at random) or ``mnar`` (positives hidden twice as often), as defined in
`taskmask.data.missingness`.

Methods, all early-stopped on the (equally thinned) validation labels and tested on every
observed test label:

- ``masked``: one 12-label model, hidden labels masked out of the loss;
- ``fill_negative``: the same model with every missing training label set to 0;
- ``drop_rows``: the same model trained only on the molecules that still have all 12 labels;
- ``single_task``: 12 binary models, each on the molecules that have its label.

A method that cannot train a model for an assay (single-task: no molecule left, or one class
only; drop_rows: no complete molecule left) scores 0.5, the ROC-AUC of a constant guess; the
table counts those assays in brackets (in smoke slices, also assays whose test part has one
class, where ROC-AUC is undefined).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
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
from tox21 import (
    SMOKE,
    Settings,
    load_tox21,
    make_split,
    multitask_aucs,
    single_task_aucs,
)

from taskmask.data.missingness import MECHANISMS

SWEEP = replace(Settings(), seeds=(0,))  # benchmarks/tox21.py's settings, one seed
SMOKE_SWEEP = replace(SMOKE, n_rows=300)


def run_method(
    method: str,
    X: np.ndarray,
    Y: np.ndarray,
    Y_thin: np.ndarray,
    parts: Any,
    settings: Settings,
    seed: int,
) -> dict[str, float]:
    """Test ROC-AUC per assay; ``Y_thin`` has the hidden labels, ``Y`` the test truth."""
    train, val, test = parts
    # validation sees the thinned labels too; test keeps all of Tox21's observed labels
    Y_dev = Y.copy()
    Y_dev[train], Y_dev[val] = Y_thin[train], Y_thin[val]
    if method == "single_task":
        aucs, _ = single_task_aucs(X, Y_dev, parts, settings, seed)
        return aucs
    if method == "fill_negative":
        filled = np.nan_to_num(Y_dev[train], nan=0.0)
        aucs, _ = multitask_aucs(X, Y_dev, parts, settings, seed, train_labels=filled)
        return aucs
    if method == "drop_rows":
        complete = train[~np.isnan(Y_dev[train]).any(axis=1)]
        if len(complete) < 2:  # BatchNorm needs two rows to train on
            return dict.fromkeys(settings.tasks, math.nan)
        aucs, _ = multitask_aucs(X, Y_dev, (complete, val, test), settings, seed)
        return aucs
    aucs, _ = multitask_aucs(X, Y_dev, parts, settings, seed)
    return aucs


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mechanism, rate and method: mean ROC-AUC over assays (0.5 where no model), mean and
    std over seeds, and how many assays had no model."""
    rows = []
    for mechanism in MECHANISMS:
        for rate in sorted({r["rate"] for r in runs}):
            for method in SWEEP_METHODS:
                chosen = [
                    r
                    for r in runs
                    if r["method"] == method
                    and r["rate"] == rate
                    and (r["mechanism"] == mechanism or rate == 0.0)
                ]
                if not chosen:
                    continue
                means = [
                    float(np.mean([0.5 if math.isnan(v) else v for v in r["auc"].values()]))
                    for r in chosen
                ]
                no_model = [sum(math.isnan(v) for v in r["auc"].values()) for r in chosen]
                rows.append(
                    {
                        "mechanism": mechanism,
                        "rate": rate,
                        "method": method,
                        "mean": float(np.mean(means)),
                        "std": float(np.std(means)) if len(means) > 1 else math.nan,
                        "no_model": float(np.mean(no_model)),
                    }
                )
    return rows


def targets(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The two figures the issue sets targets on."""
    value = {(r["mechanism"], r["rate"], r["method"]): r["mean"] for r in rows}
    out = {}
    if ("mcar", 0.5, "masked") in value:
        out["mcar_drop_at_50"] = value["mcar", 0.0, "masked"] - value["mcar", 0.5, "masked"]
    if ("mnar", 0.5, "masked") in value:
        out["mnar_masked_minus_fill_at_50"] = (
            value["mnar", 0.5, "masked"] - value["mnar", 0.5, "fill_negative"]
        )
    return out


def markdown(rows: list[dict[str, Any]], n_seeds: int) -> str:
    rates = sorted({r["rate"] for r in rows})
    lines = [
        f"Mean test ROC-AUC over the 12 assays ({n_seeds} seed(s)); in brackets, assays with "
        "no model (scored 0.5).",
        "",
        "| mechanism | method | " + " | ".join(f"{rate:.0%} hidden" for rate in rates) + " |",
        "|---|---" + "|---" * len(rates) + "|",
    ]
    for mechanism in MECHANISMS:
        for method in SWEEP_METHODS:
            cells = []
            for rate in rates:
                match = [
                    r
                    for r in rows
                    if (r["mechanism"], r["rate"], r["method"]) == (mechanism, rate, method)
                ]
                if not match:
                    cells.append("")
                    continue
                r = match[0]
                text = f"{r['mean']:.3f}" + ("" if math.isnan(r["std"]) else f" ± {r['std']:.3f}")
                cells.append(text + (f" [{r['no_model']:g}]" if r["no_model"] else ""))
            lines.append(f"| {mechanism} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """One panel per mechanism, mean ROC-AUC against the hidden fraction, a line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), constrained_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(MECHANISMS), sharey=True)
    titles = {"mcar": "missing completely at random", "mnar": "not at random (positives 2x)"}
    for ax, mechanism in zip(axes, MECHANISMS, strict=True):
        for method in SWEEP_METHODS:
            line = [r for r in rows if r["mechanism"] == mechanism and r["method"] == method]
            x = [100 * r["rate"] for r in line]
            y = [r["mean"] for r in line]
            err = [0.0 if math.isnan(r["std"]) else r["std"] for r in line]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"Tox21, {titles[mechanism]}")
        ax.set_xlabel("observed training labels hidden (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean test ROC-AUC (12 assays)")
    axes[0].legend()
    figure.savefig(path, dpi=120)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__, "missing_rate", seeds=1)
    parser.add_argument("--methods", default=",".join(SWEEP_METHODS))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if data_missing(args.data_dir / "tox21" / "tox21.csv.gz", "Tox21", args.data_dir):
        return 0
    settings = chosen_settings(args, SWEEP, SMOKE_SWEEP)
    rates = SMOKE_SWEEP_RATES if args.smoke else SWEEP_RATES
    start = time.perf_counter()
    molecules = load_tox21(args.data_dir, settings)
    X, Y = molecules.inputs, molecules.labels
    print(f"{len(X)} molecules x {X.shape[1]} features; {molecules.featurize_seconds:.1f} s")
    runs = []
    for seed in settings.seeds:
        parts = make_split("random", molecules, seed)
        development = np.concatenate([parts.train, parts.validation])
        for mechanism, rate, Y_thin in sweep_cells(Y, development, seed, rates):
            for method in args.methods.split(","):
                t0 = time.perf_counter()
                aucs = run_method(method, X, Y, Y_thin, parts, settings, seed)
                seconds = time.perf_counter() - t0
                runs.append(
                    {
                        "seed": seed,
                        "mechanism": mechanism,
                        "rate": rate,
                        "method": method,
                        "auc": aucs,
                        "seconds": seconds,
                    }
                )
                mean = np.mean([0.5 if math.isnan(v) else v for v in aucs.values()])
                print(
                    f"seed {seed} {mechanism} {rate:4.0%} {method:13s} {mean:.4f} "
                    f"({seconds:.0f} s)",
                    flush=True,
                )
    rows = summarise(runs)
    table = markdown(rows, len(settings.seeds))
    found = targets(rows)
    total = time.perf_counter() - start
    print(table)
    for key, value in found.items():
        print(f"{key}: {value:+.4f}")
    print(f"total {total:.0f} s")
    report = {
        "settings": asdict(settings),
        "rates": list(rates),
        "targets": found,
        "total_seconds": total,
        "summary": rows,
        "runs": runs,
    }
    write_results(args.out, report, table)
    plot(rows, args.out / "missing_rate.png")
    print(f"wrote {args.out / 'missing_rate.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
