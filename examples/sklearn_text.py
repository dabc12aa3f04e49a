"""GoEmotions through scikit-learn: ``TfidfVectorizer`` -> `MultiTaskClassifier`, the 28
emotions as one multilabel task, with a share of the training labels hidden (NaN).

The TF-IDF matrix stays sparse: the estimator densifies one batch of rows at a time. Hidden
labels are missing, not negative: they add nothing to the loss. Per-label thresholds are fitted
on the dev split (observed labels only) and the test split is scored once, with every label.

    python examples/sklearn_text.py              # the full train split (a few minutes on a CPU)
    python examples/sklearn_text.py --smoke      # a tiny slice, seconds
    python examples/sklearn_text.py --data DIR --hide 0.5 --epochs 5

``DIR`` holds ``{train,dev,test}.tsv.gz`` and ``emotions.txt`` (default: the shared copy in
``../shared/data/goemotions``, see its ``PROVENANCE.md``); without it the script says so and
exits with status 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.pipeline import make_pipeline

from taskmask.functional import fit_thresholds
from taskmask.sklearn import MultiTaskClassifier

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "goemotions"


def load_split(folder: Path, split: str, emotions: list[str]) -> tuple[list[str], pd.DataFrame]:
    """Texts and a 0/1 frame with one column per emotion (the TSV has no header)."""
    table = pd.read_csv(folder / f"{split}.tsv.gz", sep="\t", header=None, dtype=str)
    ids = table[1].str.split(",")
    labels = np.zeros((len(table), len(emotions)))
    for row, row_ids in enumerate(ids):
        labels[row, [int(i) for i in row_ids]] = 1.0
    return table[0].tolist(), pd.DataFrame(labels, columns=emotions)


def hide(labels: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Each label entry NaN (missing) with probability ``share``, independently."""
    rng = np.random.default_rng(seed)
    return labels.mask(rng.random(labels.shape) < share)


def positive_probabilities(model: object, texts: list[str]) -> np.ndarray:
    """``(n_samples, n_labels)``: `predict_proba` gives one ``(n, 2)`` array per column."""
    return np.column_stack([p[:, 1] for p in model.predict_proba(texts)])  # type: ignore[attr-defined]


def label_table(
    probs: np.ndarray, truth: np.ndarray, thresholds: np.ndarray, emotions: list[str]
) -> pd.DataFrame:
    """Per label: test positives, ROC-AUC, F1 at 0.5 and at the dev-fitted threshold."""
    rows = []
    for j, name in enumerate(emotions):
        y = truth[:, j]
        both = 0 < y.sum() < len(y)
        rows.append(
            {
                "label": name,
                "positives": int(y.sum()),
                "roc_auc": roc_auc_score(y, probs[:, j]) if both else np.nan,
                "f1@0.5": f1_score(y, probs[:, j] >= 0.5, zero_division=0.0),
                "threshold": thresholds[j],
                "f1@tuned": f1_score(y, probs[:, j] >= thresholds[j], zero_division=0.0),
            }
        )
    return pd.DataFrame(rows).set_index("label")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--smoke", action="store_true", help="a tiny slice, a few seconds")
    parser.add_argument("--hide", type=float, default=0.5, help="share of labels hidden")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.data / "train.tsv.gz").is_file():
        print(f"GoEmotions not found in {args.data}; skipping (pass --data DIR)")
        return 0
    torch.set_num_threads(1 if args.smoke else torch.get_num_threads())
    emotions = (args.data / "emotions.txt").read_text().split()
    (train_x, train_y), (dev_x, dev_y), (test_x, test_y) = (
        load_split(args.data, split, emotions) for split in ("train", "dev", "test")
    )
    if args.smoke:
        train_x, train_y = train_x[:3000], train_y.iloc[:3000]
        dev_x, dev_y, test_x, test_y = dev_x[:500], dev_y.iloc[:500], test_x[:500], test_y[:500]
    hidden_train = hide(train_y, args.hide, args.seed)
    task = {"name": "emotion", "kind": "multilabel", "columns": emotions}
    classifier = MultiTaskClassifier(
        tasks=[task],
        hidden=(64,),
        epochs=args.epochs or (10 if args.smoke else 6),
        batch_size=256,
        lr=5e-3 if args.smoke else 2e-3,
        weight_decay=1e-5,
        standardize=False,  # TF-IDF rows are already normalised; keep rare words small
        random_state=args.seed,
    )
    vectorizer = TfidfVectorizer(
        max_features=2_000 if args.smoke else 20_000,
        ngram_range=(1, 2),
        min_df=2,
        sublinear_tf=True,
        dtype=np.float32,
    )
    model = make_pipeline(vectorizer, classifier)
    start = time.perf_counter()
    model.fit(train_x, hidden_train)
    seconds = time.perf_counter() - start
    observed = hidden_train.notna().to_numpy()
    print(
        f"trained on {len(train_x):,} texts, {observed.mean():.0%} of {observed.size:,} labels "
        f"observed, {len(model[0].vocabulary_):,} features, in {seconds:.1f} s"
    )
    dev_labels = hide(dev_y, args.hide, args.seed + 1)  # thresholds from observed labels only
    dev_probs = positive_probabilities(model, dev_x)
    fitted = fit_thresholds(
        dev_probs, dev_labels.fillna(0).to_numpy(), dev_labels.notna().to_numpy()
    )
    thresholds = np.asarray(fitted)
    table = label_table(
        positive_probabilities(model, test_x), test_y.to_numpy(), thresholds, emotions
    )
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print(table.to_string())
    macro = table[["roc_auc", "f1@0.5", "f1@tuned"]].mean()
    print(
        f"macro over {table['roc_auc'].notna().sum()} labels: ROC-AUC {macro['roc_auc']:.3f}, "
        f"F1@0.5 {macro['f1@0.5']:.3f}, F1@tuned {macro['f1@tuned']:.3f}; "
        f"mean label accuracy (score) {model.score(test_x, test_y):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
