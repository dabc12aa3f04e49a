"""Seed 000's closing idea: four MBTI letters from a person's posts, any of which may be unlabelled.

Each of the 412 users of ``../shared/data/mbti_subset`` (see its ``PROVENANCE.md``) gives one
text, their posts joined, and four binary tasks read from their type string; the positive class
is the second letter of each pair:

    I/E: E = 1, I = 0    N/S: S = 1, N = 0    T/F: F = 1, T = 0    J/P: P = 1, J = 0

Before anything is vectorised, `mask_text` deletes what names the type outright (375 of the 412
users write their own type): URLs, which carry forum names such as ``/infp-forum-...``; any word
containing a type code (``INTJ``, ``intj's``, ``INFPs``, ``ENFP-T``, ``mrinfj``), or starting
with one with ``x`` wildcards (``INxP``, ``xNTJ``); upper-case partial codes (``NF``, ``SJs``,
``NTP``, ``INT``, ``TJ``); the function terms ``Ni Ne Si Se Ti Te Fi Fe`` as whole words, any
case, plus ``Fi's`` and stacks such as ``NiTe``; and, unless ``--keep-trait-words``,
the words that name a letter: introvert*, extrovert*/extravert*, intuitive(s), intuitor(s),
sensor(s), thinker(s), feeler(s), judger(s), perceiver(s). The script prints each count before
and after, and the TF-IDF features that still contain a type code.

Then ``TfidfVectorizer`` (fitted on the training users' texts; the matrix stays sparse) ->
`MultiTaskClassifier`: four binary tasks with ``pos_weight="balanced"``, because the classes are
skewed (79 % I, 89 % N; 55 % F, 63 % P). One fixed split, stratified on the I/E x N/S cell (the
two rare axes), puts 30 % of the users in the test set, with all their labels. In training,
each label is hidden (NaN) with probability ``--hide`` (0.3), drawn again for each seed. Three
models per seed:

- ``masked``: the hidden labels are missing; they add nothing to the loss;
- ``filled 0``: the same labels, with the hidden ones set to the negative letter (I, N, T, J);
- ``all labels``: nothing hidden, for reference.

There is also the ``majority`` baseline: every test user gets the majority letter of the
training split (ROC-AUC and balanced accuracy 0.5). With 20,000 features and about 200 users,
the MLP fits its training users perfectly, and a rare letter's test probabilities all stay
below 0.5. So each model is cross-fitted: one network per fold (``--folds``, 3) of the training
users. Per axis, the threshold is the one with the best balanced accuracy on the out-of-fold
predictions, scored against the labels that variant trains on (observed labels only for
``masked``). The test probability is the mean over the fold networks. Reported per axis:
ROC-AUC, and balanced accuracy and macro-F1 over both letters at that threshold. Each is a mean
over ``--seeds`` seeds, followed by the macro over the axes (mean ± std over seeds). The
hyper-parameters were picked by 3-fold CV ROC-AUC on the training users only, never on the test
users.

    python examples/mbti_text.py                  # 5 seeds, 2-3 minutes on one CPU thread
    python examples/mbti_text.py --smoke          # a tiny slice, seconds
    python examples/mbti_text.py --data-dir DIR --hide 0.5 --seeds 3

``DIR`` holds ``mbti_subset/mbti_first412.csv.gz`` (default: ``../shared/data``); without it
the script says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score, roc_curve
from sklearn.model_selection import KFold, train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sklearn_text import hide, positive_probabilities

from taskmask.sklearn import MultiTaskClassifier

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
FILE = Path("mbti_subset") / "mbti_first412.csv.gz"
AXES = {"I/E": "IE", "N/S": "NS", "T/F": "TF", "J/P": "JP"}  # task: (negative, positive)

_EDGE_L, _EDGE_R = r"(?<![A-Za-z0-9_])", r"(?![A-Za-z0-9_])"
MASKS = {  # applied in this order; each match is replaced by a space
    "url": re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE),
    "type code": re.compile(
        r"(?<![\w'’])[\w'’]*?"  # a whole word: what comes before the code,
        r"(?:[IE][NS][TF][JP]|(?<![A-Za-z0-9])[IEX][NSX][TFX][JPX])"  # the code (or INxP),
        r"[\w'’]*(?:-[AT]\b)?",  # what comes after it, and a -A / -T variant suffix
        re.IGNORECASE,
    ),
    "partial code": re.compile(
        _EDGE_L + r"(?:[IE]?[NS][TF][JP]?|[NS][JP]|[TF][JP])(?:['’]?s)?" + _EDGE_R
    ),
    "function": re.compile(
        _EDGE_L + r"(?:(?:[NSTF][ie]){2,4}|[NSTF][ie](?:['’]s)?|(?i:[NSTF][IE]))" + _EDGE_R
    ),
    "trait word": re.compile(
        _EDGE_L + r"(?:intro-?vert\w*|extr[ao]-?vert\w*|intuitives?|intuitors?|sensors?|thinkers?"
        r"|feelers?|judgers?|perceivers?)" + _EDGE_R,
        re.IGNORECASE,
    ),
}
TYPE_INSIDE = re.compile(r"[ie][ns][tf][jp]", re.IGNORECASE)  # the residual check


def mask_text(text: str, *, trait_words: bool = True) -> tuple[str, Counter[str]]:
    """``text`` without type mentions (see the module docstring) and the matches per mask."""
    counts: Counter[str] = Counter()
    for name, pattern in MASKS.items():
        if name == "trait word" and not trait_words:
            continue
        text, n = pattern.subn(" ", text)
        counts[name] += n
    return text, counts


def parse_type(code: str) -> dict[str, float]:
    """``"ENFP"`` -> ``{"I/E": 1.0, "N/S": 0.0, "T/F": 1.0, "J/P": 1.0}``."""
    code = code.strip().upper()
    if len(code) != 4 or any(c not in pair for c, pair in zip(code, AXES.values(), strict=True)):
        raise ValueError(f"not an MBTI type: {code!r}")
    return {task: float(c == pair[1]) for c, (task, pair) in zip(code, AXES.items(), strict=True)}


def load_users(path: Path) -> tuple[list[str], pd.Series]:
    """One text per user (posts joined by newlines, wrapping quotes removed) and their types."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    texts = [re.sub(r"^'(.*)'$", r"\1", p).replace("|||", "\n") for p in table["posts"]]
    return texts, table["type"].str.strip().str.upper()


def masked_users(
    texts: list[str], types: pd.Series, *, trait_words: bool
) -> tuple[list[str], pd.DataFrame]:
    """The masked texts and a table of each mask's matches before and after masking."""
    masked: list[str] = []
    before: Counter[str] = Counter()
    own_before = own_after = 0
    for text, code in zip(texts, types, strict=True):
        clean, counts = mask_text(text, trait_words=trait_words)
        masked.append(clean)
        before.update(counts)
        own = re.compile(rf"\b{code}s?\b", re.IGNORECASE)
        own_before += bool(own.search(text))
        own_after += bool(own.search(clean))
    after: Counter[str] = Counter()
    for clean in masked:
        after.update(mask_text(clean, trait_words=trait_words)[1])
    rows = {name: (before[name], after[name]) for name in before}
    rows["users naming their own type"] = (own_before, own_after)
    return masked, pd.DataFrame(rows, index=["before", "after"]).T


def strata(labels: pd.DataFrame) -> pd.Series:
    """The I/E x N/S cell of each user ("00" = IN ... "11" = ES); a cell with fewer than 2
    users joins the largest one."""
    cell = labels["I/E"].astype(int).astype(str) + labels["N/S"].astype(int).astype(str)
    sizes = cell.value_counts()
    return cell.where(cell.map(sizes) >= 2, sizes.index[0])


def classifier(args: argparse.Namespace, seed: int) -> MultiTaskClassifier:
    tasks = [{"name": t, "kind": "binary", "column": t, "pos_weight": "balanced"} for t in AXES]
    return MultiTaskClassifier(
        tasks=tasks,
        hidden=(64,),
        dropout=0.2,
        epochs=args.epochs or (5 if args.smoke else 30),
        batch_size=32,
        lr=3e-3,
        weight_decay=1e-2,
        standardize=False,  # TF-IDF rows are already normalised; keep rare words small
        random_state=seed,
    )


def best_threshold(probs: np.ndarray, target: np.ndarray) -> float:
    """The threshold (``prob >= t`` is positive) with the best balanced accuracy; 0.5 when
    ``target`` holds one class only."""
    if not 0 < target.sum() < len(target):
        return 0.5
    fpr, tpr, thresholds = roc_curve(target, probs)
    return float(thresholds[np.argmax(tpr - fpr)])


def cross_fit(
    args: argparse.Namespace, seed: int, x_train: Any, labels: pd.DataFrame, x_test: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Train one model per fold of the training users: the thresholds (balanced accuracy on
    the out-of-fold predictions, observed labels only) and the fold models' mean probability
    on the test users, ``(n_test, 4)``."""
    held_out = np.zeros(labels.shape)
    test_probs = np.zeros((x_test.shape[0], len(AXES)))
    folds = KFold(args.folds, shuffle=True, random_state=seed).split(labels)
    for k, (fit_rows, out_rows) in enumerate(folds):
        model = classifier(args, seed + 1000 * k).fit(x_train[fit_rows], labels.iloc[fit_rows])
        held_out[out_rows] = positive_probabilities(model, x_train[out_rows])
        test_probs += positive_probabilities(model, x_test) / args.folds
    observed = labels.notna().to_numpy()
    target = labels.fillna(0).to_numpy()
    thresholds = [
        best_threshold(held_out[observed[:, j], j], target[observed[:, j], j])
        for j in range(len(AXES))
    ]
    return np.asarray(thresholds), test_probs


def axis_scores(probs: np.ndarray, thresholds: np.ndarray, truth: pd.DataFrame) -> pd.DataFrame:
    """Per axis: ROC-AUC, and balanced accuracy and macro-F1 over both letters at the
    threshold."""
    rows = []
    for j, task in enumerate(truth.columns):
        y, p = truth[task].to_numpy(int), probs[:, j]
        guess = p >= thresholds[j]
        rows.append(
            {
                "axis": task,
                "roc_auc": roc_auc_score(y, p) if 0 < y.sum() < len(y) else np.nan,
                "bal_acc": balanced_accuracy_score(y, guess),
                "f1_macro": f1_score(y, guess, average="macro", zero_division=0.0),
            }
        )
    return pd.DataFrame(rows)


def majority(train: pd.DataFrame, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: every test user gets the training majority letter of each axis
    (probabilities 0 or 1, thresholds 0.5)."""
    probs = np.tile((train.mean().to_numpy() > 0.5).astype(float), (n_test, 1))
    return probs, np.full(len(AXES), 0.5)


def run_seed(
    args: argparse.Namespace,
    seed: int,
    train: tuple[Any, pd.DataFrame],
    test: tuple[Any, pd.DataFrame],
) -> pd.DataFrame:
    """Each variant's scores on the test users, for one draw of hidden labels."""
    (x_train, y_train), (x_test, y_test) = train, test
    hidden = hide(y_train, args.hide, seed)
    variants = {"masked": hidden, "filled 0": hidden.fillna(0.0), "all labels": y_train}
    frames = []
    for name, labels in variants.items():
        if name == "all labels" and args.smoke:
            continue
        thresholds, probs = cross_fit(args, seed, x_train, labels, x_test)
        frames.append(axis_scores(probs, thresholds, y_test).assign(variant=name))
    return pd.concat(frames).assign(seed=seed, observed=hidden.notna().to_numpy().mean())


def summary(scores: pd.DataFrame, y_test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean over seeds per variant and axis; the macro over axes, mean ± std over seeds."""
    order = {"majority": 0, "masked": 1, "filled 0": 2, "all labels": 3}
    metrics = ["roc_auc", "bal_acc", "f1_macro"]
    per_axis = scores.groupby(["variant", "axis"], sort=False)[metrics].mean().reset_index()
    positives = y_test.sum().astype(int)
    per_axis.insert(2, "test pos.", per_axis["axis"].map(lambda t: f"{positives[t]}/{len(y_test)}"))
    per_axis = per_axis.sort_values("variant", key=lambda v: v.map(order), kind="stable")
    macro = scores.groupby(["variant", "seed"])[metrics].mean().groupby("variant")
    table = macro.mean().map("{:.3f}".format) + " ± " + macro.std(ddof=0).map("{:.3f}".format)
    return per_axis.set_index(["variant", "axis"]), table.sort_index(key=lambda v: v.map(order))


def vectorise(args: argparse.Namespace, train: list[str], test: list[str]) -> tuple[Any, Any]:
    """Sparse TF-IDF rows ``(n_users, n_features)``, the vocabulary from the training users;
    prints how many features still contain a type code (0 after masking)."""
    vectorizer = TfidfVectorizer(
        max_features=2_000 if args.smoke else 20_000,
        ngram_range=(1, 2),
        min_df=2,
        sublinear_tf=True,
        dtype=np.float32,
    )
    x_train, x_test = vectorizer.fit_transform(train), vectorizer.transform(test)
    leaks = [f for f in vectorizer.get_feature_names_out() if TYPE_INSIDE.search(f)]
    print(f"{x_train.shape[1]:,} TF-IDF features; {len(leaks)} contain a type code {leaks[:5]}")
    return x_train, x_test


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--smoke", action="store_true", help="a tiny slice, a few seconds")
    parser.add_argument("--hide", type=float, default=0.3, help="share of training labels hidden")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 5; smoke 1)")
    parser.add_argument("--epochs", type=int, default=None, help="default 30; smoke 5")
    parser.add_argument("--folds", type=int, default=None, help="default 3; smoke 2")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--keep-trait-words", action="store_true", help="don't mask introvert...")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.folds = args.folds or (2 if args.smoke else 3)
    path = args.data_dir / FILE
    if not path.is_file():
        print(f"MBTI subset not found at {path}; skipping (pass --data-dir DIR)")
        return 0
    torch.set_num_threads(1)
    start = time.perf_counter()
    texts, types = load_users(path)
    if args.smoke:
        texts, types = texts[:120], types[:120]
    labels = pd.DataFrame([parse_type(t) for t in types])
    print(
        f"{len(texts)} users; positive rate "
        + ", ".join(f"{t} {labels[t].mean():.2f}" for t in AXES)
    )
    texts, masking = masked_users(texts, types, trait_words=not args.keep_trait_words)
    print(f"masked before vectorising (matches):\n{masking.to_string()}")
    train, test = train_test_split(
        np.arange(len(labels)), test_size=0.3, stratify=strata(labels), random_state=args.split_seed
    )
    x_train, x_test = vectorise(args, [texts[i] for i in train], [texts[i] for i in test])
    y_train = labels.iloc[train].reset_index(drop=True)
    y_test = labels.iloc[test].reset_index(drop=True)
    print(f"split: {len(train)} train / {len(test)} test users, stratified on I/E x N/S")
    base = axis_scores(*majority(y_train, len(test)), y_test).assign(variant="majority", seed=0)
    seeds = range(args.seeds or (1 if args.smoke else 5))
    runs = [run_seed(args, s, (x_train, y_train), (x_test, y_test)) for s in seeds]
    observed = np.mean([r["observed"].iloc[0] for r in runs])
    per_axis, macro = summary(pd.concat([base, *runs]), y_test)
    print(f"test scores, mean over {len(seeds)} seeds ({observed:.0%} of training labels observed)")
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print(per_axis.to_string())
        print(f"macro over the 4 axes, mean ± std over seeds:\n{macro.to_string()}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
