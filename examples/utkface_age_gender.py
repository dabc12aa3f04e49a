"""Seed 003: age regression + gender classification on faces, and one label per image.

The seed is a forum thread about a Keras model with ``loss={'age_output': 'mse',
'gender_output': 'sparse_categorical_crossentropy'}`` and ``loss_weights={'age_output': .001,
'gender_output': 1.}``: what happens when an image carries only one of the two labels? Keras has
no missing labels; the usual trick (a zero sample weight) keeps its default reduction, the mean
over *every* row of the batch, so a task's loss is diluted by the rows that lack its label.
taskmask divides each task's loss by the number of its *observed* labels instead.

This script, on ../shared/data/utkface_subset, compares per task (age MAE in years and R²,
gender accuracy and ROC-AUC on a fully labelled test split), over ``--seeds``:

- ``both_labels``: every training image has both labels (the seed's own setting);
- ``per_task``: the training images split in two disjoint random parts, a fraction
  ``--age-fraction`` labelled for age only and the rest for gender only; taskmask's per-task
  normalisation (mean over the observed labels of each task);
- ``diluted``: the same labels, each task's loss summed over its observed labels and divided by
  the number of rows in the batch (``loss_fns`` returning ``LossTerm(sum, count=batch rows)``),
  which is Keras' default with zero sample weights;
- ``single_age`` / ``single_gender``: one single-task model per part, on its part only.

Setup: ``--n-images`` faces drawn at random (the 2 files with an invalid gender left out),
downscaled to ``--size`` pixels, split 70 / 10 / 20 % (train / validation / test, stratified by
gender); the age target is z-scored with the mean and std of the training ages that are
labelled (so weight 1 on it equals Keras' weight 1/var(age) ≈ 0.0025 on MSE in years, the
seed's 0.001 in spirit); loss weights 1 and 1. Model: `taskmask.CNN2DConfig` with
``--channels`` (3x3 convolutions, batch norm, 2x2 max pools, global average pool), Adam
lr 1e-3, batch 64, up to ``--epochs`` epochs with early stopping on the validation loss
(fully labelled validation split, so ``val/loss`` means the same under both normalisations).

    python examples/utkface_age_gender.py                       # full run (8 min at load 6)
    python examples/utkface_age_gender.py --age-fraction 0.9 \\
        --variants per_task diluted single_age single_gender   # unequal parts
    python examples/utkface_age_gender.py --smoke --out /tmp/utk-smoke   # seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _experiments as ex
from sklearn.model_selection import train_test_split

import taskmask
from taskmask import CNN2DConfig, EarlyStopping, LossTerm, Task, task_loss
from taskmask.data.images import extract_archive, read_image_folder

VARIANTS = ("both_labels", "per_task", "diluted", "single_age", "single_gender")
METRICS = ("age mae_years", "age r2", "gender accuracy", "gender roc_auc")
LABELS_CSV = "utkface_subset/utkface_labels.csv"
IMAGES_TAR = "utkface_subset/utkface_9780_images.tar"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ex.base_parser(__doc__ or "", out="runs/utkface_age_gender")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--n-images", type=int, default=4000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--age-fraction", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    if not 0 < args.age_fraction < 1:
        parser.error(f"--age-fraction must be in (0, 1), got {args.age_fraction}")
    if args.smoke:
        args.n_images, args.size, args.epochs = 240, 16, 1
        args.seeds = args.seeds or [0]
    args.seeds = args.seeds or [0, 1, 2]
    return args


@dataclass
class Faces:
    inputs: torch.Tensor  # (N, 3, size, size) in [0, 1]
    age: np.ndarray  # (N,) years
    gender: np.ndarray  # (N,) 0 male, 1 female
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    age_part: np.ndarray  # training rows labelled for age only (the one-label settings)
    gender_part: np.ndarray  # the other training rows, labelled for gender only


def load_faces(args: argparse.Namespace) -> Faces:
    labels = pd.read_csv(args.data_dir / LABELS_CSV)
    labels = labels[labels["gender"].isin([0, 1])]
    subset = labels.sample(n=min(args.n_images, len(labels)), random_state=args.split_seed)
    root = extract_archive(args.data_dir / IMAGES_TAR, args.cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "subset.csv"
        subset[["filename", "age", "gender"]].to_csv(listing, index=False)
        inputs, frame = read_image_folder(root / "images", listing, size=(args.size, args.size))
    age = frame["age"].to_numpy(dtype=np.float64)
    gender = frame["gender"].to_numpy(dtype=np.float64)
    rows = np.arange(len(age))
    rest, test = train_test_split(
        rows, test_size=0.2, stratify=gender, random_state=args.split_seed
    )
    train, val = train_test_split(
        rest, test_size=0.125, stratify=gender[rest], random_state=args.split_seed
    )
    shuffled = np.random.default_rng(args.split_seed).permutation(train)
    n_age = round(args.age_fraction * len(train))
    return Faces(
        inputs, age, gender, train, val, test, np.sort(shuffled[:n_age]), np.sort(shuffled[n_age:])
    )


def diluted_loss(
    task: Task, output: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> LossTerm:
    """The masked sum, divided (by the trainer) by every row of the batch, labelled or not:
    Keras' ``sum_over_batch_size`` with zero sample weights on the missing labels."""
    term = task_loss(task, output, target, observed)
    return LossTerm(term.sum, torch.tensor(float(target.numel()), device=output.device))


def training_labels(faces: Faces, variant: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Training rows and raw labels (NaN = missing) of a variant; age still in years."""
    if variant == "single_age":
        return faces.age_part, {"age": faces.age[faces.age_part]}
    if variant == "single_gender":
        return faces.gender_part, {"gender": faces.gender[faces.gender_part]}
    rows = faces.train
    age, gender = faces.age[rows].copy(), faces.gender[rows].copy()
    if variant != "both_labels":
        age[np.isin(rows, faces.gender_part)] = np.nan
        gender[np.isin(rows, faces.age_part)] = np.nan
    return rows, {"age": age, "gender": gender}


def train_one(faces: Faces, variant: str, seed: int, args: argparse.Namespace) -> dict[str, float]:
    rows, labels = training_labels(faces, variant)
    mean, std = 0.0, 1.0
    if "age" in labels:
        mean, std = np.nanmean(labels["age"]), np.nanstd(labels["age"])
        labels["age"] = (labels["age"] - mean) / std
    all_tasks = {
        "age": Task(name="age", kind="regression"),
        "gender": Task(name="gender", kind="binary"),
    }
    tasks = [all_tasks[name] for name in labels]

    def held_out(part: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        if "age" in labels:
            out["age"] = (faces.age[part] - mean) / std
        if "gender" in labels:
            out["gender"] = faces.gender[part]
        return out

    clock = ex.Clock()
    result = taskmask.fit(
        faces.inputs[rows],
        labels,
        tasks,
        trunk=CNN2DConfig(channels=tuple(args.channels), norm="batch"),
        validation=(faces.inputs[faces.val], held_out(faces.val)),
        standardize="channel",
        loss_fns={t.name: diluted_loss for t in tasks} if variant == "diluted" else None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=seed,
        train_metrics=False,
        progress=False,
        early_stopping=EarlyStopping(monitor="val/loss", patience=args.patience),
    )
    metrics = taskmask.evaluate(result.model, faces.inputs[faces.test], held_out(faces.test))
    row = dict.fromkeys(METRICS, float("nan"))
    if "age" in metrics:
        row["age mae_years"] = ex.metric_value(metrics["age"], "mae") * std
        row["age r2"] = ex.metric_value(metrics["age"], "r2")
    if "gender" in metrics:
        row["gender accuracy"] = ex.metric_value(metrics["gender"], "accuracy")
        row["gender roc_auc"] = ex.metric_value(metrics["gender"], "roc_auc")
    history = result.history
    row["n_train_images"] = float(len(rows))
    row["epochs"] = float(len(history))
    row["seconds"] = clock()
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if ex.data_missing(args.data_dir, [LABELS_CSV, IMAGES_TAR]):
        return 0
    ex.setup(args)
    clock = ex.Clock()
    faces = load_faces(args)
    print(
        f"UTKFace: {len(faces.age)} images at {args.size}x{args.size}; train {len(faces.train)} "
        f"(age part {len(faces.age_part)}, gender part {len(faces.gender_part)}), validation "
        f"{len(faces.val)}, test {len(faces.test)}; loaded in {clock():.0f} s",
        flush=True,
    )
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            row = train_one(faces, variant, seed, args)
            rows.append({"variant": variant, "seed": seed, **row})
            shown = ", ".join(f"{m} {row[m]:.3f}" for m in METRICS if not np.isnan(row[m]))
            print(f"{variant:14s} seed {seed}: {shown}; {row['seconds']:.0f} s", flush=True)
    results = pd.DataFrame(rows)
    summary = ex.summarize(results)
    tables = {"test_summary": summary}
    if "per_task" in args.variants and len(args.variants) > 1:
        tables["vs_per_task"] = ex.compare_to(results, "per_task", list(METRICS))
    plot = ex.plot_bars(results, list(METRICS), args.out / "metrics.png")
    notes = [
        f"{len(faces.age)} images at {args.size}x{args.size}, age fraction {args.age_fraction}; "
        "test metrics on a fully labelled test split; MAE in years.",
        "diff = variant minus per_task; Welch p-values uncorrected for multiple comparisons.",
    ]
    ex.finish(
        args,
        clock(),
        title="Seed 003: age + gender on UTKFace, one label per image",
        results=results,
        tables=tables,
        notes=notes,
        plot=plot,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
