"""Tox21: one masked multi-task MLP against 12 single-task MLPs and against a multi-task MLP
trained with the missing labels filled as negative, on random and Bemis-Murcko scaffold splits.

    python benchmarks/tox21.py                   # full run: 2 splits x 3 seeds x 3 methods
    python benchmarks/tox21.py --smoke           # a 600-molecule slice in seconds (tests)
    python benchmarks/tox21.py --out DIR         # where results.json / results.md go
    python benchmarks/tox21.py --data-dir PATH   # default: ../shared/data from the repo root

Data: ../shared/data/tox21/tox21.csv.gz (MoleculeNet's 7,831 molecules, 12 assays, 17 %
missing; 8 SMILES do not parse in RDKit and are left out). Each split is 80/10/10; the random
split is redrawn per seed, the scaffold split is OGB's (deterministic, largest scaffold groups
to train, chirality kept), so its seeds vary only the model's initialisation and batches.

All three methods share the trunk, the optimiser settings and the features, chosen on
validation ROC-AUC only (see benchmarks/README.md for what was tried). Early stopping watches
the mean validation ROC-AUC over the 12 tasks (one task for a single-task model) and restores
the best epoch. Validation and test metrics count observed labels only, for every method:
filling as negative changes the training labels and nothing else.

The multi-task models have one 12-label ``multilabel`` task: one head of 12 logits, the BCE
averaged over the observed (molecule, assay) entries, so its ``roc_auc_macro`` is the mean over
assays. Each single-task model trains on the molecules that have its label.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from _common import benchmark_parser, chosen_settings, data_missing, write_results

import taskmask
from taskmask import EarlyStopping, MLPConfig, Task
from taskmask.functional import metric_as_float

TASKS = (
    "NR-AR",
    "NR-AR-LBD",
    "NR-AhR",
    "NR-Aromatase",
    "NR-ER",
    "NR-ER-LBD",
    "NR-PPAR-gamma",
    "SR-ARE",
    "SR-ATAD5",
    "SR-HSE",
    "SR-MMP",
    "SR-p53",
)
METHODS = ("masked", "fill_negative", "single_task")
SPLITS = ("random", "scaffold")
PUBLISHED = {
    "random": [
        ("MoleculeNet, best model (Wu et al. 2018)", 0.829),
        ("chemprop D-MPNN (Yang et al. 2019)", 0.851),
    ],
    "scaffold": [("OGB ogbg-moltox21, best GIN (Hu et al. 2020)", 0.776)],
}
TARGETS = {"random": 0.855, "scaffold": 0.78}


@dataclass(frozen=True)
class Settings:
    """Features, trunk and optimiser shared by every method (chosen on validation)."""

    features: tuple[str, ...] = ("descriptors",)
    radius: int = 2
    n_bits: int = 2048
    hidden: tuple[int, ...] = (512, 512)
    dropout: float = 0.5
    norm: Literal["batch", "layer"] | None = "batch"
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch_size: int = 256
    epochs: int = 200
    patience: int = 10
    seeds: tuple[int, ...] = (0, 1, 2)
    n_rows: int | None = None  # a slice of the data set (smoke runs)
    tasks: tuple[str, ...] = TASKS  # fewer in smoke runs


SMOKE = Settings(
    features=("morgan",),
    n_bits=128,
    hidden=(16,),
    epochs=2,
    patience=1,
    seeds=(0,),
    n_rows=600,
    tasks=TASKS[:3],
)


@dataclass(frozen=True)
class Molecules:
    """The featurised data set: one row per molecule that parsed."""

    smiles: list[str]
    inputs: np.ndarray  # (N, n_features) float32
    labels: np.ndarray  # (N, n_tasks) float64, NaN where missing
    n_failed: int
    featurize_seconds: float


def signed_log(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log(1 + |x|)``: a fixed per-value transform that tames the heavy tails of
    RDKit descriptors (molecular weight, BertzCT) before per-column standardisation."""
    return np.sign(values) * np.log1p(np.abs(values))


def featurize_columns(smiles: Sequence[str], settings: Settings) -> tuple[np.ndarray, Any, Any]:
    """``taskmask.data.chem.featurize`` (the SMILES parsed once for every kind) with the descriptor
    columns through `signed_log`."""
    from taskmask.data.chem import descriptor_names, feature_names, featurize

    kinds: Any = settings.features
    X, kept, failures = featurize(
        smiles, kind=kinds, radius=settings.radius, n_bits=settings.n_bits
    )
    descriptors = np.isin(feature_names(kinds, n_bits=settings.n_bits), descriptor_names())
    X[:, descriptors] = signed_log(X[:, descriptors])
    return X.astype(np.float32), kept, failures


def load_tox21(data_dir: Path, settings: Settings) -> Molecules:
    """Read the CSV, featurise the SMILES and keep the rows that parse (reported on stdout)."""
    from taskmask.data.chem import failure_report

    frame = pd.read_csv(data_dir / "tox21" / "tox21.csv.gz")
    if settings.n_rows is not None:
        frame = frame.iloc[: settings.n_rows]
    start = time.perf_counter()
    inputs, kept, failures = featurize_columns(frame["smiles"].tolist(), settings)
    seconds = time.perf_counter() - start
    if failures:
        print(failure_report(failures, limit=3))
    labels = frame[list(settings.tasks)].to_numpy(np.float64)[kept]
    smiles = frame["smiles"].to_numpy()[kept].tolist()
    return Molecules(smiles, inputs, labels, len(failures), seconds)


def make_split(kind: str, molecules: Molecules, seed: int) -> Any:
    from taskmask.data.splits import random_split, scaffold_split

    if kind == "random":
        return random_split(len(molecules.smiles), (0.8, 0.1, 0.1), seed=seed)
    return scaffold_split(molecules.smiles, (0.8, 0.1, 0.1), include_chirality=True)


def _fit(
    X: np.ndarray,
    labels: dict[str, np.ndarray],
    tasks: list[Task],
    validation: tuple[np.ndarray, dict[str, np.ndarray]],
    monitor: str,
    settings: Settings,
    seed: int,
) -> taskmask.FitResult:
    if settings.norm == "batch" and len(X) % settings.batch_size == 1:
        # BatchNorm cannot train on a last batch of one row: leave that row out
        X, labels = X[:-1], {name: y[:-1] for name, y in labels.items()}
    return taskmask.fit(
        X,
        labels,
        tasks,
        trunk=MLPConfig(hidden=settings.hidden, dropout=settings.dropout, norm=settings.norm),
        validation=validation,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        seed=seed,
        early_stopping=EarlyStopping(monitor=monitor, patience=settings.patience),
        train_metrics=False,
        progress=False,
    )


def multitask_aucs(
    X: np.ndarray,
    Y: np.ndarray,
    parts: Any,
    settings: Settings,
    seed: int,
    *,
    train_labels: np.ndarray | None = None,
) -> tuple[dict[str, float], int]:
    """Test ROC-AUC per assay of one 12-label model; ``train_labels`` replaces ``Y[train]``
    (filled or dropped labels). Returns the AUCs and the number of epochs run."""
    train, val, test = parts
    task = Task(name="tox21", kind="multilabel", labels=settings.tasks)
    y_train = Y[train] if train_labels is None else train_labels
    result = _fit(
        X[train],
        {"tox21": y_train},
        [task],
        (X[val], {"tox21": Y[val]}),
        "val/tox21/roc_auc_macro",
        settings,
        seed,
    )
    metrics = taskmask.evaluate(result.model, X[test], {"tox21": Y[test]})["tox21"]
    aucs = {t: metric_as_float(metrics[f"roc_auc/{t}"]) for t in settings.tasks}
    return aucs, len(result.history)


def single_task_aucs(
    X: np.ndarray,
    Y: np.ndarray,
    parts: Any,
    settings: Settings,
    seed: int,
    *,
    train_labels: np.ndarray | None = None,
) -> tuple[dict[str, float], int]:
    """One binary model per assay, trained on the molecules that have that label."""
    train, val, test = parts
    y_train = Y[train] if train_labels is None else train_labels
    aucs, epochs = {}, 0
    for j, name in enumerate(settings.tasks):
        rows = ~np.isnan(y_train[:, j])
        val_rows = val[~np.isnan(Y[val, j])]
        test_rows = test[~np.isnan(Y[test, j])]
        if rows.sum() == 0 or len(np.unique(y_train[rows, j])) < 2 or len(val_rows) == 0:
            aucs[name] = math.nan  # nothing to learn from: the method has no model for it
            continue
        result = _fit(
            X[train][rows],
            {name: y_train[rows, j]},
            [Task(name=name, kind="binary")],
            (X[val_rows], {name: Y[val_rows, j]}),
            f"val/{name}/roc_auc",
            settings,
            seed,
        )
        epochs += len(result.history)
        metrics = taskmask.evaluate(result.model, X[test_rows], {name: Y[test_rows, j]})[name]
        aucs[name] = metric_as_float(metrics["roc_auc"])
    return aucs, epochs


def run_method(
    method: str, X: np.ndarray, Y: np.ndarray, parts: Any, settings: Settings, seed: int
) -> tuple[dict[str, float], int]:
    if method == "masked":
        return multitask_aucs(X, Y, parts, settings, seed)
    if method == "fill_negative":
        filled = np.nan_to_num(Y[parts[0]], nan=0.0)
        return multitask_aucs(X, Y, parts, settings, seed, train_labels=filled)
    return single_task_aucs(X, Y, parts, settings, seed)


def mean_defined(values: Sequence[float]) -> float:
    """Mean over the defined (non-NaN) values; NaN when there are none."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def summarise(runs: list[dict[str, Any]], tasks: Sequence[str]) -> dict[str, Any]:
    """Mean and std over seeds of the mean test ROC-AUC over assays, and of each assay's."""
    summary: dict[str, Any] = {}
    for split in sorted({r["split"] for r in runs}):
        for method in METHODS:
            chosen = [r for r in runs if r["split"] == split and r["method"] == method]
            if not chosen:
                continue
            means = [mean_defined(list(r["auc"].values())) for r in chosen]
            per_task = {
                t: (
                    mean_defined([r["auc"][t] for r in chosen]),
                    _std([r["auc"][t] for r in chosen]),
                )
                for t in tasks
            }
            summary[f"{split}/{method}"] = {
                "mean": mean_defined(means),
                "std": _std(means),
                "per_seed": means,
                "per_task": per_task,
                "seconds": float(sum(r["seconds"] for r in chosen)),
            }
    return summary


def _std(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.std(defined)) if len(defined) > 1 else math.nan


def _fmt(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def markdown(summary: dict[str, Any], settings: Settings) -> str:
    """The headline table (with the published figures beside) and the per-assay table."""
    n = len(settings.seeds)
    lines = [f"| split | method | mean test ROC-AUC ({n} seeds) | target / published |"]
    lines.append("|---|---|---|---|")
    for split in SPLITS:
        for method in METHODS:
            key = f"{split}/{method}"
            if key in summary:
                s = summary[key]
                target = f">= {TARGETS[split]}" if method == "masked" else ""
                lines.append(f"| {split} | {method} | {_fmt(s['mean'], s['std'])} | {target} |")
        if any(k.startswith(f"{split}/") for k in summary):
            for name, value in PUBLISHED[split]:
                lines.append(f"| {split} | {name} | | {value:.3f} |")
    lines += ["", "| assay | " + " | ".join(summary) + " |"]
    lines.append("|---" * (len(summary) + 1) + "|")
    for task in settings.tasks:
        cells = [_fmt(*summary[k]["per_task"][task]) for k in summary]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__, "tox21", seeds=3)
    parser.add_argument("--splits", default=",".join(SPLITS), help="random,scaffold")
    parser.add_argument("--methods", default=",".join(METHODS), help=",".join(METHODS))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if data_missing(args.data_dir / "tox21" / "tox21.csv.gz", "Tox21", args.data_dir):
        return 0
    settings = chosen_settings(args, Settings(), SMOKE)
    start = time.perf_counter()
    molecules = load_tox21(args.data_dir, settings)
    X, Y = molecules.inputs, molecules.labels
    print(
        f"{len(X)} molecules x {X.shape[1]} features ({'+'.join(settings.features)}), "
        f"{molecules.n_failed} left out; featurised in {molecules.featurize_seconds:.1f} s"
    )
    runs = []
    for split in args.splits.split(","):
        for seed in settings.seeds:
            parts = make_split(split, molecules, seed)
            for method in args.methods.split(","):
                t0 = time.perf_counter()
                aucs, epochs = run_method(method, X, Y, parts, settings, seed)
                seconds = time.perf_counter() - t0
                runs.append(
                    {
                        "split": split,
                        "method": method,
                        "seed": seed,
                        "auc": aucs,
                        "epochs": epochs,
                        "seconds": seconds,
                    }
                )
                print(
                    f"{split:8s} seed {seed} {method:13s} mean test ROC-AUC "
                    f"{mean_defined(list(aucs.values())):.4f}  ({epochs} epochs, {seconds:.0f} s)",
                    flush=True,
                )
    summary = summarise(runs, settings.tasks)
    table = markdown(summary, settings)
    total = time.perf_counter() - start
    print(table)
    print(f"total {total:.0f} s")
    report = {
        "settings": asdict(settings),
        "n_molecules": len(X),
        "n_failed_smiles": molecules.n_failed,
        "featurize_seconds": molecules.featurize_seconds,
        "total_seconds": total,
        "published": PUBLISHED,
        "targets": TARGETS,
        "summary": summary,
        "runs": runs,
    }
    write_results(args.out, report, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
