"""Biogen ADME (Fang et al. 2023): one masked multi-task regression MLP for the 6 endpoints
against 6 single-task MLPs, on the authors' per-endpoint train / test splits.

    python benchmarks/biogen.py                  # full run: 2 protocols x 3 seeds x 2 methods
    python benchmarks/biogen.py --smoke          # a 400-molecule slice in seconds (tests)
    python benchmarks/biogen.py --out DIR        # where results.json / results.md go
    python benchmarks/biogen.py --data-dir PATH  # default: ../shared/data from the repo root

Data: ../shared/data/biogen_adme: 3,521 molecules, 6 endpoints already on a log10 scale
(HLM and RLM intrinsic clearance, MDR1-MDCK efflux ratio, solubility, human and rat plasma
protein binding), 46 % of the 3,521 x 6 values missing. The main table is the source of truth
for values; the authors' ``splits/ADME_<endpoint>_{train,test}.csv.gz`` only say which part a
measured value belongs to. A value is matched to its split file by canonical SMILES, or, failing
that, by canonical SMILES without stereo together with the same value (within 1e-4); a
measured value found in neither file is not used (the counts are printed). The two PPB split
files come from a larger, different table (values differ by ~0.1), so for them only the
canonical SMILES match counts.

The authors split each endpoint on its own, so a molecule can be in HLM's test set and RLM's
training set. Two protocols:

- ``authors``: every endpoint's training labels are used; a multi-task model may thus see the
  RLM value of a molecule whose HLM value it is tested on (never the HLM value itself);
- ``strict``: every label of a molecule that is in any endpoint's test set is hidden from
  training, for both methods, so no test molecule is seen in training at all.

Targets are standardised per endpoint with the training labels' mean and standard deviation
(the MSE of each endpoint then weighs the same); predictions are mapped back to the log10
scale, where R², Pearson r and MAE are computed on the endpoint's test molecules. 10 % of the
training molecules (seeded) are held out for early stopping on the validation loss (the sum of
the endpoints' standardised MSEs; one endpoint's for a single-task model).
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
from tox21 import Settings as _Settings
from tox21 import featurize_columns

import taskmask
from taskmask import EarlyStopping, MLPConfig, Task

ENDPOINTS = {
    "HLM": "LOG HLM_CLint (mL/min/kg)",
    "RLM": "LOG RLM_CLint (mL/min/kg)",
    "MDR1_ER": "LOG MDR1-MDCK ER (B-A/A-B)",
    "Sol": "LOG SOLUBILITY PH 6.8 (ug/mL)",
    "hPPB": "LOG PLASMA PROTEIN BINDING (HUMAN) (% unbound)",
    "rPPB": "LOG PLASMA PROTEIN BINDING (RAT) (% unbound)",
}
VALUE_CHECKED = ("HLM", "RLM", "MDR1_ER", "Sol")
METHODS = ("masked", "single_task")
PROTOCOLS = ("authors", "strict")
METRICS = ("r2", "pearson_r", "mae")
PARTS = ("test", "train")  # a molecule in both files of an endpoint counts as test


@dataclass(frozen=True)
class Settings(_Settings):
    """As Tox21's; chosen on this data set's validation loss."""

    features: tuple[str, ...] = ("descriptors",)
    hidden: tuple[int, ...] = (512, 512, 512)
    dropout: float = 0.3
    norm: Literal["batch", "layer"] | None = None
    lr: float = 3e-4
    weight_decay: float = 0.0
    batch_size: int = 128
    patience: int = 20
    validation_fraction: float = 0.1


SMOKE = Settings(
    features=("morgan",), n_bits=128, hidden=(16,), epochs=2, patience=1, seeds=(0,), n_rows=400
)


def _canonical(smiles: Sequence[str]) -> tuple[list[str | None], list[str | None]]:
    """Canonical SMILES with and without stereo (``None`` where RDKit cannot parse)."""
    from taskmask.data.chem import parse_smiles, rdkit_module

    chem = rdkit_module("rdkit.Chem")
    mols, _ = parse_smiles(list(smiles))
    exact = [None if m is None else chem.MolToSmiles(m) for m in mols]
    loose = [None if m is None else chem.MolToSmiles(m, isomericSmiles=False) for m in mols]
    return exact, loose


def _lookups(frame: pd.DataFrame) -> tuple[set[str | None], dict[str | None, list[float]]]:
    """The split file's canonical SMILES, and its values by stereo-free canonical SMILES."""
    exact, loose = _canonical(frame["smiles"].tolist())
    by_loose: dict[str | None, list[float]] = {}
    for key, value in zip(loose, frame["activity"], strict=True):
        by_loose.setdefault(key, []).append(float(value))
    return set(exact), by_loose


def authors_parts(
    frame: pd.DataFrame, split_dir: Path
) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """``(N, 6)`` strings ``train`` / ``test`` / ``""`` (unmatched or unmeasured) per endpoint,
    and per endpoint how many measured values each match rule placed."""
    exact, loose = _canonical(frame["SMILES"].tolist())
    parts = np.full((len(frame), len(ENDPOINTS)), "", dtype=object)
    counts: dict[str, dict[str, int]] = {}
    for j, (name, column) in enumerate(ENDPOINTS.items()):
        values = frame[column].to_numpy(np.float64)
        found = {"exact": 0, "no_stereo_same_value": 0, "unmatched": 0}
        tables = {p: _lookups(pd.read_csv(split_dir / f"ADME_{name}_{p}.csv.gz")) for p in PARTS}
        for i in np.flatnonzero(~np.isnan(values)):
            hit = next((p for p in PARTS if exact[i] in tables[p][0]), "")
            rule = "exact"
            if not hit and name in VALUE_CHECKED:
                rule = "no_stereo_same_value"
                same = [
                    p
                    for p in PARTS
                    if any(abs(v - values[i]) < 1e-4 for v in tables[p][1].get(loose[i], []))
                ]
                hit = same[0] if same else ""
            found[rule if hit else "unmatched"] += 1
            parts[i, j] = hit
        counts[name] = found
    return parts, counts


@dataclass(frozen=True)
class Adme:
    inputs: np.ndarray  # (N, n_features) float32
    values: np.ndarray  # (N, 6) float64 log10 values, NaN where not measured
    parts: np.ndarray  # (N, 6) "train" / "test" / ""
    match_counts: dict[str, dict[str, int]]
    featurize_seconds: float


def load_biogen(data_dir: Path, settings: Settings) -> Adme:
    frame = pd.read_csv(data_dir / "biogen_adme" / "ADME_public_set_3521.csv.gz")
    if settings.n_rows is not None:
        frame = frame.iloc[: settings.n_rows]
    start = time.perf_counter()
    inputs, kept, failures = featurize_columns(frame["SMILES"].tolist(), settings)
    seconds = time.perf_counter() - start
    frame = frame.iloc[kept].reset_index(drop=True)
    if failures:
        print(f"{len(failures)} SMILES left out")
    parts, counts = authors_parts(frame, data_dir / "biogen_adme" / "splits")
    values = frame[list(ENDPOINTS.values())].to_numpy(np.float64)
    return Adme(inputs, values, parts, counts, seconds)


def training_labels(data: Adme, protocol: str) -> np.ndarray:
    """Log10 values usable for training (NaN elsewhere) under ``protocol``."""
    train = np.where(data.parts == "train", data.values, np.nan)
    if protocol == "strict":
        in_any_test = (data.parts == "test").any(axis=1)
        train[in_any_test] = np.nan
    return train


def regression_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, r2_score

    if len(target) < 2 or np.isnan(pred).any():
        return dict.fromkeys(METRICS, math.nan)
    return {
        "r2": float(r2_score(target, pred)),
        "pearson_r": float(np.corrcoef(pred, target)[0, 1]),
        "mae": float(mean_absolute_error(target, pred)),
    }


def _fit_predict(
    X: np.ndarray,
    scaled: np.ndarray,
    names: list[str],
    train: np.ndarray,
    val: np.ndarray,
    settings: Settings,
    seed: int,
) -> tuple[np.ndarray, float]:
    """Fit regression tasks ``names`` (columns of ``scaled``) on rows ``train``, stop early on
    rows ``val``; return standardised predictions for every row and the best validation loss."""
    labels = {n: scaled[train, j] for j, n in enumerate(names)}
    result = taskmask.fit(
        X[train],
        labels,
        [Task(name=n, kind="regression") for n in names],
        trunk=MLPConfig(hidden=settings.hidden, dropout=settings.dropout, norm=settings.norm),
        validation=(X[val], {n: scaled[val, j] for j, n in enumerate(names)}),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        seed=seed,
        early_stopping=EarlyStopping(monitor="val/loss", patience=settings.patience),
        train_metrics=False,
        progress=False,
    )
    predictions = taskmask.predict(result.model, X)
    best = float(result.history["val/loss"].min())
    return np.stack([predictions[n].scores[:, 0] for n in names], axis=1), best


def run_once(
    data: Adme, protocol: str, method: str, seed: int, settings: Settings
) -> tuple[dict[str, dict[str, float]], float]:
    """Test metrics per endpoint for one protocol, method and seed, and the validation loss
    (the sum over endpoints of the standardised MSE at the best epoch)."""
    y_train = training_labels(data, protocol)
    names = list(ENDPOINTS)
    mean, std = np.nanmean(y_train, axis=0), np.nanstd(y_train, axis=0)
    scaled = (y_train - mean) / np.where(std > 0, std, 1.0)
    rows = np.flatnonzero(~np.isnan(y_train).all(axis=1))
    rng = np.random.default_rng(seed)
    held = rng.random(len(rows)) < settings.validation_fraction
    train, val = rows[~held], rows[held]
    # an endpoint without training labels (only in smoke slices) gets no model
    fitted = [j for j in range(len(names)) if (~np.isnan(scaled[train, j])).any()]
    pred = np.full_like(scaled, np.nan)
    val_loss = 0.0
    if method == "masked":
        chosen = [names[j] for j in fitted]
        pred[:, fitted], val_loss = _fit_predict(
            data.inputs, scaled[:, fitted], chosen, train, val, settings, seed
        )
    else:
        for j in fitted:
            mine, mine_val = train[~np.isnan(scaled[train, j])], val[~np.isnan(scaled[val, j])]
            pred[:, [j]], loss = _fit_predict(
                data.inputs, scaled[:, [j]], [names[j]], mine, mine_val, settings, seed
            )
            val_loss += loss
    pred = pred * np.where(std > 0, std, 1.0) + mean  # back to log10 units
    out = {}
    for j, name in enumerate(names):
        test = np.flatnonzero(data.parts[:, j] == "test")
        out[name] = regression_metrics(pred[test, j], data.values[test, j])
    return out, val_loss


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for protocol in PROTOCOLS:
        for method in METHODS:
            chosen = [r for r in runs if r["protocol"] == protocol and r["method"] == method]
            if not chosen:
                continue
            cell: dict[str, Any] = {"seconds": float(sum(r["seconds"] for r in chosen))}
            for name in ENDPOINTS:
                for metric in METRICS:
                    values = np.array([r["metrics"][name][metric] for r in chosen])
                    cell[f"{name}/{metric}"] = (float(values.mean()), float(values.std()))
            summary[f"{protocol}/{method}"] = cell
    return summary


def markdown(summary: dict[str, Any], data: Adme, n_seeds: int) -> str:
    n_train = (data.parts == "train").sum(axis=0)
    n_test = (data.parts == "test").sum(axis=0)
    lines = [
        f"Test metrics on the log10 scale, mean ± std over {n_seeds} seeds.",
        "",
        "| endpoint | train / test | protocol | method | R² | Pearson r | MAE |",
        "|---|---|---|---|---|---|---|",
    ]
    for j, name in enumerate(ENDPOINTS):
        for key, cell in summary.items():
            protocol, method = key.split("/")
            stats = [cell[f"{name}/{m}"] for m in METRICS]
            text = [f"{m:.3f} ± {s:.3f}" for m, s in stats]
            lines.append(
                f"| {name} | {n_train[j]} / {n_test[j]} | {protocol} | {method} | "
                + " | ".join(text)
                + " |"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__, "biogen", seeds=3)
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--methods", default=",".join(METHODS))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    path = args.data_dir / "biogen_adme" / "ADME_public_set_3521.csv.gz"
    if data_missing(path, "Biogen ADME", args.data_dir):
        return 0
    settings = chosen_settings(args, Settings(), SMOKE)
    start = time.perf_counter()
    data = load_biogen(args.data_dir, settings)
    print(
        f"{len(data.inputs)} molecules x {data.inputs.shape[1]} features, featurised in "
        f"{data.featurize_seconds:.1f} s; split matching: {data.match_counts}"
    )
    runs = []
    for protocol in args.protocols.split(","):
        for seed in settings.seeds:
            for method in args.methods.split(","):
                t0 = time.perf_counter()
                metrics, val_loss = run_once(data, protocol, method, seed, settings)
                seconds = time.perf_counter() - t0
                runs.append(
                    {
                        "protocol": protocol,
                        "method": method,
                        "seed": seed,
                        "metrics": metrics,
                        "val_loss": val_loss,
                        "seconds": seconds,
                    }
                )
                r = "  ".join(f"{n} {m['r2']:.3f}" for n, m in metrics.items())
                print(
                    f"{protocol:7s} seed {seed} {method:11s} R² {r}  ({seconds:.0f} s)", flush=True
                )
    summary = summarise(runs)
    table = markdown(summary, data, len(settings.seeds))
    total = time.perf_counter() - start
    print(table)
    print(f"total {total:.0f} s")
    report = {
        "settings": asdict(settings),
        "match_counts": data.match_counts,
        "n_train": dict(zip(ENDPOINTS, (data.parts == "train").sum(0).tolist(), strict=True)),
        "n_test": dict(zip(ENDPOINTS, (data.parts == "test").sum(0).tolist(), strict=True)),
        "featurize_seconds": data.featurize_seconds,
        "total_seconds": total,
        "summary": summary,
        "runs": runs,
    }
    write_results(args.out, report, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
