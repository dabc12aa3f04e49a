"""Automatic task weighting against equal static weights, on HMP ADL with input-derived tasks.

Four tasks share the seed-004 1-D CNN (`taskmask.CNN1DConfig()`): the activity (13 classes,
Eat_soup and Eat_meat merged) and three regression targets computed from each trial (per-channel
standard deviation, sum of absolute changes, first 8 Fourier magnitudes; z-scored). Here all
four are ordinary tasks (``auxiliary=False``), so their test R² is reported too. Data, split,
model and training are those of ``examples/hmp_auxiliary.py``: first 500 samples, 503 / 126 /
210 trials, Adam lr 1e-3, clip norm 1, batch 64, exactly 60 epochs for every method
(``--patience N``: early stopping on the validation loss of the activity task instead).

Each ``--methods`` entry is a name of `taskmask.weighting.WEIGHTINGS`; ``static`` is equal
weights (all 1). For every method and seed the script records the test macro-F1 and accuracy of
the activity, the test R² of each regression task, and the weights of the last epoch; then,
against ``static``, the difference of means, the pooled std and a Welch t-test, and says whether
any method beats equal weighting beyond seed noise (p < 0.05, and p < 0.05 / number of methods,
Bonferroni).

    python benchmarks/weighting.py                  # full run (10 min at load 5, 1 thread)
    python benchmarks/weighting.py --methods static pcgrad mgda cagrad nash_mtl   # slower ones
    python benchmarks/weighting.py --smoke --out /tmp/weighting-smoke           # seconds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import _experiments as ex

import taskmask
from taskmask import CNN1DConfig, EarlyStopping, Task
from taskmask.weighting import WEIGHTINGS

REGRESSION = ("std", "sum_abs_changes", "fourier")
TASKS = ("activity", *REGRESSION)
DEFAULT_METHODS = ["static", "uncertainty", "dwa", "gradnorm", "famo", "upgrad"]
MAIN = "activity f1_macro"
METRICS = (MAIN, "activity accuracy", *(f"{name} r2" for name in REGRESSION))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ex.base_parser(__doc__ or "", out="runs/weighting")
    parser.add_argument("--methods", nargs="+", choices=sorted(WEIGHTINGS), default=DEFAULT_METHODS)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument(
        "--patience",
        type=int,
        default=0,
        help="early stopping patience on val/activity/loss; 0 (default): exactly --epochs",
    )
    args = parser.parse_args(argv)
    if "static" not in args.methods:
        parser.error("--methods must include 'static', the reference")
    if args.smoke:
        args.epochs = 1
        args.seeds = args.seeds or [0]
    args.seeds = args.seeds or [0, 1, 2, 3, 4]
    return args


def train_one(
    data: ex.HMPData,
    targets: dict[str, np.ndarray],
    method: str,
    seed: int,
    epochs: int,
    patience: int,
) -> dict[str, float]:
    tasks = [Task(name="activity", kind="multiclass")]
    tasks += [Task(name=name, kind="regression") for name in REGRESSION]

    def labels(rows: np.ndarray) -> dict[str, object]:
        return {
            "activity": data.activity[rows].tolist(),
            **{n: targets[n][rows] for n in REGRESSION},
        }

    clock = ex.Clock()
    result = taskmask.fit(
        data.inputs[data.train],
        labels(data.train),
        tasks,
        trunk=CNN1DConfig(),
        validation=(data.inputs[data.val], labels(data.val)),
        standardize="channel",
        weighting=method,
        epochs=epochs,
        batch_size=64,
        lr=1e-3,
        clip_norm=1.0,
        seed=seed,
        train_metrics=False,
        progress=False,
        early_stopping=(
            EarlyStopping(monitor="val/activity/loss", patience=patience) if patience else None
        ),
    )
    metrics = taskmask.evaluate(result.model, data.inputs[data.test], labels(data.test))
    row = {
        MAIN: ex.metric_value(metrics["activity"], "f1_macro"),
        "activity accuracy": ex.metric_value(metrics["activity"], "accuracy"),
        **{f"{n} r2": ex.metric_value(metrics[n], "r2_macro") for n in REGRESSION},
    }
    last = result.history.iloc[-1]
    row |= {f"final weight {n}": float(last[f"weight/{n}"]) for n in TASKS}
    row |= {"epochs": float(len(result.history)), "seconds": clock()}
    return row


def verdict(comparison: pd.DataFrame, n_methods: int) -> list[str]:
    """One sentence per method on the main metric, and the overall answer."""
    lines, winners = [], []
    strict = 0.05 / max(n_methods, 1)
    for _, row in comparison.iterrows():
        diff, p = row[f"{MAIN} diff"], row[f"{MAIN} p"]
        beyond = diff > 0 and p < 0.05
        lines.append(
            f"{row['variant']}: macro-F1 {diff:+.3f} vs static (pooled std "
            f"{row[f'{MAIN} pooled std']:.3f}, Welch p = {p:.3f})"
            + (" - better beyond seed noise" if beyond else "")
            + (" (also after Bonferroni)" if beyond and p < strict else "")
        )
        if beyond:
            winners.append(str(row["variant"]))
    answer = (
        f"Beats equal weighting beyond seed noise (p < 0.05): {', '.join(winners)}."
        if winners
        else "No method beats equal weighting on activity macro-F1 beyond seed noise (p < 0.05)."
    )
    return [*lines, answer]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if ex.data_missing(args.data_dir, ["hmp_adl/HMP_Dataset.tar.gz"]):
        return 0
    ex.setup(args)
    clock = ex.Clock()
    data = ex.load_hmp(
        args.data_dir,
        args.cache_dir,
        length=500,
        crop="start",
        split_seed=args.split_seed,
        per_class=10 if args.smoke else None,
    )
    targets = {n: ex.hmp_aux_targets(data, n, fourier_k=8) for n in REGRESSION}
    print(f"HMP: train {len(data.train)}, validation {len(data.val)}, test {len(data.test)}")
    rows = []
    for method in args.methods:
        for seed in args.seeds:
            row = train_one(data, targets, method, seed, args.epochs, args.patience)
            rows.append({"variant": method, "seed": seed, **row})
            print(
                f"{method:12s} seed {seed}: macro-F1 {row[MAIN]:.3f}, {row['epochs']:.0f} epochs, "
                f"{row['seconds']:.0f} s",
                flush=True,
            )
    results = pd.DataFrame(rows)
    summary = ex.summarize(results)
    comparison = ex.compare_to(results, "static", list(METRICS))
    lines = verdict(comparison, len(args.methods) - 1)
    plot = ex.plot_bars(results, [MAIN, "fourier r2"], args.out / "weighting.png")
    print("\n".join(lines))
    ex.finish(
        args,
        clock(),
        title="Automatic weighting vs equal weights: HMP ADL, activity + 3 input-derived tasks",
        results=results,
        tables={"test_summary": summary, "vs_static": comparison},
        notes=lines,
        plot=plot,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
