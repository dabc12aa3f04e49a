"""Seed 004, practice 2: do auxiliary losses computed from the inputs help a 1-D CNN on HMP?

The seed (a 2018 blog post) classifies wrist-accelerometer trials of the HMP ADL data set with
Conv1D(16,5)-MaxPool(5)-Conv1D(32,5)-MaxPool(5)-Conv1D(64,5)-GlobalMaxPool-Dense, then adds one
auxiliary regression head predicting a feature of the input (standard deviation, sum of absolute
changes, Fourier magnitudes) and reports F1 0.54 -> 0.57 / 0.57 / 0.59 from one run each.
This script repeats that with taskmask on ../shared/data/hmp_adl, over several seeds:

- data: the 839 trials, each cut to its first ``--length`` samples (500 = 15.6 s at 32 Hz;
  ``--crop center`` for the middle ones) or zero-padded at the end (606 trials are shorter
  than 500; the median is 403); inputs standardised per channel on the training split;
- classes: Eat_soup (3 trials) and Eat_meat (5) are merged into "Eat", 13 classes, so every
  class has trials in each split (``sklearn.model_selection.train_test_split(stratify=...)``,
  ``--split-seed``; ``--vary-split`` draws a new split per training seed): 25 % test, then
  20 % of the rest for validation (503 / 126 / 210 trials);
- model: `taskmask.CNN1DConfig()` (the seed's network), Adam lr 1e-3, clip norm 1, batch 64,
  exactly ``--epochs`` epochs (60) for every variant; ``--patience N`` instead stops early on
  the validation loss of the activity task (best weights restored), which favours the variants
  with auxiliary losses: they keep that loss falling for longer (see benchmarks/README.md);
- auxiliary targets: `taskmask.data.auxiliary.auxiliary_targets` per channel (std, sum of absolute
  changes, the first ``--fourier-k`` Fourier magnitudes) on the samples the network sees, padding
  excluded, z-scored on the training split; each is an ``auxiliary=True`` regression task with
  weight ``w`` for every ``w`` in ``--weights``; for each variant the weight with the best mean
  validation macro-F1 is marked as chosen (test figures never choose anything);
- metrics on the test split: macro-F1 (the issue's metric), support-weighted F1 (what the seed
  printed as "avg / total") and accuracy; mean ± std over ``--seeds``, and each variant against
  the baseline (difference of means, Welch t-test).

    python examples/hmp_auxiliary.py                      # full run (10 min at load 5, 1 thread)
    python examples/hmp_auxiliary.py --smoke --out /tmp/hmp-smoke   # seconds, for the tests
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _experiments as ex

import taskmask
from taskmask import CNN1DConfig, EarlyStopping, Task

AUXILIARY = ("std", "sum_abs_changes", "fourier")
VARIANTS = {
    "baseline": (),
    "std": ("std",),
    "sum_abs_changes": ("sum_abs_changes",),
    "fourier": ("fourier",),
    "all_three": AUXILIARY,
}
METRICS = ("f1_macro", "f1_weighted", "accuracy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ex.base_parser(__doc__ or "", out="runs/hmp_auxiliary")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--weights", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--crop", choices=["start", "center"], default="start")
    parser.add_argument("--fourier-k", type=int, default=8)
    parser.add_argument("--attach-to", default=None, help="trunk block of the auxiliary heads")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument(
        "--patience",
        type=int,
        default=0,
        help="early stopping patience on val/activity/loss; 0 (default): exactly --epochs",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--vary-split",
        action="store_true",
        help="training seed s uses split seed --split-seed + s (split noise included)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds = args.seeds or [0]
        args.variants, args.weights, args.epochs = ["baseline", "fourier"], [0.1], 2
    args.seeds = args.seeds or [0, 1, 2, 3, 4]
    return args


def train_one(
    data: ex.HMPData,
    targets: dict[str, np.ndarray],
    aux: tuple[str, ...],
    weight: float,
    seed: int,
    args: argparse.Namespace,
) -> dict[str, float]:
    """Fit one variant with one seed; validation and test metrics of the activity task."""
    tasks = [Task(name="activity", kind="multiclass")]
    tasks += [
        Task(name=n, kind="regression", weight=weight, auxiliary=True, attach_to=args.attach_to)
        for n in aux
    ]

    def labels(rows: np.ndarray) -> dict[str, object]:
        return {"activity": data.activity[rows].tolist(), **{n: targets[n][rows] for n in aux}}

    clock = ex.Clock()
    result = taskmask.fit(
        data.inputs[data.train],
        labels(data.train),
        tasks,
        trunk=CNN1DConfig(),
        validation=(data.inputs[data.val], labels(data.val)),
        standardize="channel",
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        clip_norm=1.0,
        seed=seed,
        train_metrics=False,
        progress=False,
        early_stopping=(
            EarlyStopping(monitor="val/activity/loss", patience=args.patience)
            if args.patience > 0
            else None
        ),
    )
    history = result.history
    row = {
        "epochs": float(len(history)),
        "best_epoch": float(history["val/activity/loss"].idxmin() + 1),
        "seconds": clock(),
    }
    for part, rows in (("val", data.val), ("test", data.test)):
        metrics = taskmask.evaluate(
            result.model, data.inputs[rows], {"activity": data.activity[rows].tolist()}
        )["activity"]
        row[f"{part} f1_macro"] = ex.metric_value(metrics, "f1_macro")
        row[f"{part} f1_weighted"] = ex.weighted_f1(metrics)
        row[f"{part} accuracy"] = ex.metric_value(metrics, "accuracy")
    return row


def choose_weights(results: pd.DataFrame) -> dict[str, float]:
    """Per variant, the weight with the best mean validation macro-F1."""
    means = results.groupby(["variant", "weight"], sort=False)["val f1_macro"].mean()
    return {variant: float(part.idxmax()[1]) for variant, part in means.groupby(level=0)}


def run(args: argparse.Namespace) -> pd.DataFrame:
    data = ex.load_hmp(
        args.data_dir,
        args.cache_dir,
        length=args.length,
        crop=args.crop,
        split_seed=args.split_seed,
        per_class=10 if args.smoke else None,
    )
    print(
        f"HMP: {len(data.rows)} trials, {len(np.unique(data.activity))} classes, length "
        f"{args.length} ({args.crop}); train {len(data.train)}, validation {len(data.val)}, "
        f"test {len(data.test)}",
        flush=True,
    )
    splits: dict[int, tuple[ex.HMPData, dict[str, np.ndarray]]] = {}
    rows = []
    for name in args.variants:
        aux = VARIANTS[name]
        for weight in args.weights if aux else [0.0]:
            for seed in args.seeds:
                split_seed = args.split_seed + seed if args.vary_split else args.split_seed
                if split_seed not in splits:
                    split = ex.split_hmp(data, split_seed)
                    targets = {
                        n: ex.hmp_aux_targets(split, n, fourier_k=args.fourier_k) for n in AUXILIARY
                    }
                    splits[split_seed] = split, targets
                split, targets = splits[split_seed]
                row = train_one(split, targets, aux, weight, seed, args)
                rows.append(
                    {"variant": name, "weight": weight, "seed": seed, "split_seed": split_seed}
                    | row
                )
                print(
                    f"{name:16s} w={weight:<5g} seed {seed}: test macro-F1 "
                    f"{row['test f1_macro']:.3f}, val {row['val f1_macro']:.3f}, "
                    f"{row['epochs']:.0f} epochs, {row['seconds']:.0f} s",
                    flush=True,
                )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if ex.data_missing(args.data_dir, ["hmp_adl/HMP_Dataset.tar.gz"]):
        return 0
    ex.setup(args)
    clock = ex.Clock()
    results = run(args)
    chosen = choose_weights(results[results["weight"] > 0]) if len(results) else {}
    results["label"] = [
        v if w == 0 else f"{v} w={w:g}"
        for v, w in zip(results["variant"], results["weight"], strict=True)
    ]
    results["chosen on val"] = [
        w == 0 or chosen.get(v) == w
        for v, w in zip(results["variant"], results["weight"], strict=True)
    ]
    test = [f"test {m}" for m in METRICS]
    summary = ex.summarize(
        results[["label", "chosen on val", "seed", *test, "val f1_macro", "epochs", "seconds"]],
        by=("label", "chosen on val"),
    )
    tables = {"test_summary": summary}
    if "baseline" in set(results["variant"]):
        tables["vs_baseline"] = ex.compare_to(
            results, "baseline", ["test f1_macro", "test f1_weighted"], by="label"
        )
    plot = ex.plot_bars(
        results, ["test f1_macro", "test f1_weighted"], args.out / "f1.png", by="label"
    )
    notes = [
        "Seed 004 (one run, 21 folders incl. 7 `_MODEL` ones, 25 % unstratified test split, "
        "support-weighted F1): baseline 0.54, +std 0.57, +sum of changes 0.57, +Fourier 0.59.",
        f"Weights chosen on validation macro-F1: {chosen}.",
        "Welch p-values are per comparison, not corrected for the number of variants.",
    ]
    ex.finish(
        args,
        clock(),
        title="Seed 004, practice 2: auxiliary targets on HMP ADL",
        results=results,
        tables=tables,
        notes=notes,
        plot=plot,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
