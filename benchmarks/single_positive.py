"""Single positive labels on seed 002's natural scenes: one positive label kept per training
image, and the missing-label strategies side by side, from "ignore" to the losses that lead the
single-positive benchmarks (AN-LS, EM, LL-R, ASL; issue 15).

    python benchmarks/single_positive.py                  # full run: 3 seeds x 9 strategies
    python benchmarks/single_positive.py --smoke          # a 240-image slice at 32x32 (tests)
    python benchmarks/single_positive.py --out DIR        # where results.json / results.md go
    python benchmarks/single_positive.py --data-dir PATH  # default: ../shared/data
    python benchmarks/single_positive.py --size 32 --epochs 12   # the reduced run of the README
    python benchmarks/single_positive.py --strategies em,ll_r    # some strategies only

Data, split, CNN and optimiser as benchmarks/scenes.py (`_scenes.py`: 1,400 train / 200
validation / 400 test images, 5 labels, no label missing, 1.24 positives per image on average,
none without one). Protocol of Cole et al. 2021 (https://arxiv.org/abs/2106.09708): each
training image keeps one of its positive labels, drawn at random per seed, and nothing else
(`single_positive_labels`); about 6 % of the missing labels are then positives. Validation and
test labels stay complete: like the papers' code, early stopping (best epoch restored) reads the
clean validation mAP.

Strategies: ``all_labels`` (the full training labels, for reference); `Task.missing_labels`
``ignore``, ``negative`` (AN), ``weak_negative`` (WAN) and ``expected_positive`` (EPR, with the
true mean number of positives of the training images, as the paper does), ``an_ls``
(``smoothed_negative``, epsilon 0.1), ``em`` (``entropy_max``, alpha 0.1), ``ll_r``
(``large_loss_rejection``, rejection rate ``0.005 * epochs done``, the top of the authors' grid:
more of the scenes' missing labels are positives than COCO's 2.4 %) and ``asl``
(``asymmetric``: gamma_pos 0, gamma_neg 4, clip 0.05, unannotated labels as negatives).

Metrics on the test images: mAP (mean over labels of average precision, ``pr_auc_macro``, what
the papers report), mean ROC-AUC, macro F1 at 0.5, and the mean number of labels predicted
positive at 0.5 per image (the truth is 1.24; "ignore" tends to call everything positive).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from _common import benchmark_parser, chosen_settings, data_missing, write_results
from _scenes import LABELS, SMOKE, Settings, load_scenes, make_trunk, scene_split, score

import taskmask
from taskmask import EarlyStopping, Task
from taskmask.predict import predict

DELTA_REL = 0.005
HEADLINE = (
    ("pr_auc_macro", "mAP"),
    ("roc_auc_macro", "mean ROC-AUC"),
    ("f1_macro", "macro F1 (0.5)"),
    ("positives_per_image", "predicted positives / image"),
)


@dataclass(frozen=True)
class Strategy:
    """A way to train on single positive labels: a `Task.missing_labels` strategy and its
    ``missing_label_options``."""

    name: str
    missing_labels: str = "ignore"
    options: dict[str, float] = field(default_factory=dict)


STRATEGIES = (
    Strategy("all_labels"),
    Strategy("ignore"),
    Strategy("negative", "negative"),
    Strategy("weak_negative", "weak_negative"),
    Strategy("expected_positive", "expected_positive"),
    Strategy("an_ls", "smoothed_negative", {"epsilon": 0.1}),
    Strategy("em", "entropy_max", {"alpha": 0.1}),
    Strategy("ll_r", "large_loss_rejection", {"delta_rel": DELTA_REL}),
    Strategy("asl", "asymmetric", {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05}),
)


def single_positive_labels(Y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``Y`` (0/1, ``(N, k)``) with one positive label per row kept, drawn uniformly among the
    row's positives, and every other entry NaN (missing); a row with no positive is all NaN."""
    out = np.full(Y.shape, np.nan)
    for row in range(len(Y)):
        positives = np.flatnonzero(Y[row] == 1)
        if len(positives):
            out[row, rng.choice(positives)] = 1.0
    return out


def train_strategy(
    strategy: Strategy,
    X: torch.Tensor,
    labels: tuple[np.ndarray, np.ndarray],
    rows: tuple[np.ndarray, np.ndarray],
    expected_positives: float,
    settings: Settings,
    seed: int,
) -> taskmask.FitResult:
    """One CNN trained with ``strategy`` on ``X[rows[0]]`` with ``labels[0]`` (NaN: missing),
    early-stopped on the validation mAP of ``X[rows[1]]`` with ``labels[1]``."""
    (train_rows, val_rows), (y_train, y_val) = rows, labels
    if settings.norm == "batch" and len(train_rows) % settings.batch_size == 1:
        train_rows, y_train = train_rows[:-1], y_train[:-1]  # BatchNorm: no batch of one
    extra = (
        {"expected_positives": expected_positives} if strategy.name == "expected_positive" else {}
    )
    task = Task(
        name="scene",
        kind="multilabel",
        labels=LABELS,
        missing_labels=strategy.missing_labels,
        missing_label_options=strategy.options or None,
        **extra,
    )
    torch.manual_seed(seed)  # the trunk is built here, before fit seeds what it builds
    return taskmask.fit(
        X[train_rows],
        {"scene": y_train},
        [task],
        trunk=make_trunk(settings),
        validation=(X[val_rows], {"scene": y_val}),
        standardize="channel",
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        seed=seed,
        early_stopping=EarlyStopping(monitor="val/scene/pr_auc_macro", patience=settings.patience),
        train_metrics=False,
        progress=False,
    )


def run_strategy(
    strategy: Strategy, X: torch.Tensor, Y: np.ndarray, parts: Any, settings: Settings, seed: int
) -> dict[str, Any]:
    """Train ``strategy`` on one seed's single positive labels and score it on the test set."""
    Y_train = Y[parts.train]
    if strategy.name != "all_labels":
        Y_train = single_positive_labels(Y_train, np.random.default_rng([seed, 1]))
    expected = float(Y[parts.train].sum(axis=1).mean())
    labels = (Y_train, Y[parts.validation])
    result = train_strategy(
        strategy, X, labels, (parts.train, parts.validation), expected, settings, seed
    )
    probs = predict(result.model, X[parts.test])["scene"].scores
    scores = score(probs, Y[parts.test], (0.5,) * len(LABELS))
    scores["positives_per_image"] = float((probs >= 0.5).sum(axis=1).mean())
    return {"scores": scores, "epochs": len(result.history)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per strategy, mean and std over seeds of the headline metrics."""
    summary = {}
    for strategy in STRATEGIES:
        chosen = [r for r in runs if r["strategy"] == strategy.name]
        if chosen:
            cell = {}
            for key, _ in HEADLINE:
                values = np.array([r["scores"][key] for r in chosen], dtype=np.float64)
                std = float(values.std()) if len(values) > 1 else math.nan
                cell[key] = (float(values.mean()), std)
            summary[strategy.name] = cell
    return summary


def markdown(summary: dict[str, dict[str, tuple[float, float]]], n_seeds: int) -> str:
    """The headline table: one row per strategy, mean ± std over seeds."""
    lines = [
        f"Test set, {n_seeds} seed(s), mean ± std; training labels: one positive per image.",
        "",
        "| strategy | " + " | ".join(name for _, name in HEADLINE) + " |",
        "|---" * (len(HEADLINE) + 1) + "|",
    ]
    for name, cell in summary.items():
        values = [f"{m:.3f}" + ("" if math.isnan(s) else f" ± {s:.3f}") for m, s in cell.values()]
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def chosen_strategies(names: str | None) -> tuple[Strategy, ...]:
    """The strategies named in ``names`` (comma-separated), in `STRATEGIES` order; all if None."""
    if names is None:
        return STRATEGIES
    wanted = {name.strip() for name in names.split(",")}
    unknown = wanted - {s.name for s in STRATEGIES}
    if unknown:
        known = ", ".join(s.name for s in STRATEGIES)
        raise SystemExit(f"--strategies: unknown {', '.join(sorted(unknown))}; known: {known}")
    return tuple(s for s in STRATEGIES if s.name in wanted)


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "single_positive", seeds=len(Settings().seeds))
    parser.add_argument("--size", type=int, default=None, help="image side (default 100)")
    parser.add_argument("--epochs", type=int, default=None, help="most epochs (default 16)")
    parser.add_argument("--strategies", default=None, help="comma-separated names (default all)")
    args = parser.parse_args(argv)
    if data_missing(args.data_dir / "miml_scene" / "miml_images.tar", "miml_scene", args.data_dir):
        return 0
    settings = chosen_settings(args, Settings(), SMOKE)
    if args.size is not None:
        settings = replace(settings, size=args.size)
    if args.epochs is not None:
        settings = replace(settings, epochs=args.epochs)
    strategies = chosen_strategies(args.strategies)
    start = time.perf_counter()
    scenes = load_scenes(args.data_dir, settings.size, settings.n_rows)
    parts = scene_split(len(scenes.names))
    print(
        f"{len(scenes.names)} images at {settings.size}x{settings.size}; train / validation / "
        f"test {len(parts.train)} / {len(parts.validation)} / {len(parts.test)}; "
        f"{scenes.labels[parts.train].sum(axis=1).mean():.2f} positives per training image"
    )
    runs = []
    for seed in settings.seeds:
        for strategy in strategies:
            t0 = time.perf_counter()
            out = run_strategy(strategy, scenes.inputs, scenes.labels, parts, settings, seed)
            seconds = time.perf_counter() - t0
            runs.append({"seed": seed, "strategy": strategy.name, **out, "seconds": seconds})
            s = out["scores"]
            print(
                f"seed {seed} {strategy.name:17s} mAP {s['pr_auc_macro']:.4f}  ROC-AUC "
                f"{s['roc_auc_macro']:.4f}  positives/image {s['positives_per_image']:.2f}  "
                f"({out['epochs']} epochs, {seconds:.0f} s)",
                flush=True,
            )
    summary = summarise(runs)
    table = markdown(summary, len(settings.seeds))
    total = time.perf_counter() - start
    print(table)
    print(f"total {total:.0f} s")
    report = {
        "settings": asdict(settings),
        "strategies": [
            {"name": s.name, "missing_labels": s.missing_labels, "options": s.options}
            for s in strategies
        ],
        "delta_rel": DELTA_REL,
        "split": {name: len(rows) for name, rows in parts._asdict().items()},
        "total_seconds": total,
        "threads": torch.get_num_threads(),
        "summary": summary,
        "runs": runs,
    }
    write_results(args.out, report, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
