"""Threshold objectives (f1, youden, precision:P, recall:R), all label columns at once, against
brute force over every candidate threshold; rare positives: balanced + tuned beat the defaults."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taskmask import Task, fit, tune_thresholds
from taskmask.api import evaluate
from taskmask.data import make_data
from taskmask.errors import TaskmaskError
from taskmask.functional import fit_thresholds
from taskmask.functional._thresholds import Objective, fit_thresholds_by, parse_objective

SEEDS = range(6)


def _data(seed: int, n: int = 80, k: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, k, generator=g) < 0.3).double()
    scores = (0.5 * target + torch.rand(n, k, generator=g)).div(1.5)
    scores = (scores * 20).round() / 20  # ties
    observed = torch.rand(n, k, generator=g) < 0.6
    target[:, 0], observed[:3, 0] = 0.0, True  # one label without positives
    target[:3, 0] = 0.0
    return scores, target, observed


def _brute(scores: np.ndarray, target: np.ndarray, objective: Objective) -> float:
    """The objective's threshold for one column of observed entries, by trying each score."""
    if not target.any():
        return 0.5
    rows = []
    for t in np.unique(scores):  # ascending: a later row is a larger threshold
        pred = scores >= t
        tp, fp = float((pred & (target == 1)).sum()), float((pred & (target == 0)).sum())
        n_pos, n_neg = float(target.sum()), float((target == 0).sum())
        precision, recall = tp / max(tp + fp, 1), tp / n_pos
        values = {
            "f1": 2 * tp / (tp + fp + n_pos),
            "youden": recall - fp / max(n_neg, 1),
            "precision": precision,
            "recall": recall,
        }
        rows.append((t, values))
    name, level = objective
    if name in ("f1", "youden"):
        keyed = [(v[name], 0.0, -t) for t, v in rows]
    else:
        other = "recall" if name == "precision" else "precision"
        reached = any(v[name] >= level - 1e-12 for _, v in rows)
        if reached:
            keyed = [
                (v[other], v[name], -t) if v[name] >= level - 1e-12 else (-np.inf, 0.0, -t)
                for t, v in rows
            ]
        else:
            keyed = [(v[name], v[other], -t) for t, v in rows]
    best = max(
        range(len(rows)), key=lambda i: (round(keyed[i][0], 9), round(keyed[i][1], 9), keyed[i][2])
    )
    return float(rows[best][0])


OBJECTIVES = ["f1", "youden", "precision:0.8", "precision:0.99", "recall:0.7", "recall:1"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("text", OBJECTIVES)
def test_objective_equals_brute_force_per_column(seed: int, text: str) -> None:
    scores, target, observed = _data(seed)
    objective = parse_objective(text)
    found = fit_thresholds_by(scores, target, observed, objective)
    for j in range(scores.shape[1]):
        seen = observed[:, j]
        expected = _brute(scores[seen, j].numpy(), target[seen, j].numpy(), objective)
        assert found[j].item() == pytest.approx(expected, abs=1e-12), (j, text)


@pytest.mark.parametrize("seed", SEEDS)
def test_f1_equals_the_per_label_implementation_and_ignores_missing_values(seed: int) -> None:
    scores, target, observed = _data(seed)
    expected = fit_thresholds(scores.numpy(), target.numpy(), observed.numpy())
    assert tuple(fit_thresholds_by(scores, target, observed, Objective("f1")).tolist()) == expected
    dirty = scores.masked_fill(~observed, 7.0), target.masked_fill(~observed, 1.0)
    again = fit_thresholds_by(*dirty, observed, Objective("f1"))
    assert tuple(again.tolist()) == expected


def test_precision_level_is_reached_and_recall_level_too() -> None:
    scores, target, observed = _data(3, n=400)
    for name, level in (("precision", 0.75), ("recall", 0.8)):
        thresholds = fit_thresholds_by(scores, target, observed, Objective(name, level))
        for j in range(1, scores.shape[1]):
            seen = observed[:, j]
            pred, truth = scores[seen, j] >= thresholds[j], target[seen, j] == 1
            tp = float((pred & truth).sum())
            value = (
                tp / max(float(pred.sum()), 1) if name == "precision" else tp / float(truth.sum())
            )
            assert value >= level


@pytest.mark.parametrize(
    "text", ["f2", "precision", "recall:0", "precision:1.5", "youden:1", "recall:x"]
)
def test_bad_objective_names_the_field(text: str) -> None:
    with pytest.raises(TaskmaskError, match=r"tune_thresholds: expected one of .*got"):
        parse_objective(text, where="tune_thresholds")


def _muv_like(seed: int, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """3 tasks, about 0.3 % positives, 80 % of labels missing; positives lie in one corner."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    labels = {}
    for j in range(3):
        signal = x[:, j] + 0.5 * x[:, j + 3]
        y = (signal > np.quantile(signal, 0.997)).astype(float)
        y[rng.random(n) < 0.8] = np.nan
        labels[f"assay{j}"] = y
    return x, labels


def test_rare_positives_balanced_and_tuned_beat_defaults_on_test_f1() -> None:
    x, labels = _muv_like(0, 60000)
    n_pos = sum(np.nansum(v) for v in labels.values())
    observed = sum((~np.isnan(v)).sum() for v in labels.values())
    assert n_pos / observed < 0.005
    train, val, test = slice(0, 36000), slice(36000, 48000), slice(48000, None)
    part = {
        name: {k: v[s] for k, v in labels.items()}
        for name, s in (("train", train), ("val", val), ("test", test))
    }
    settings = {"epochs": 4, "batch_size": 512, "lr": 3e-3, "seed": 0, "progress": False}

    def test_f1(pos_weight: str | None, objective: str | None) -> float:
        tasks = [Task(name=n, kind="binary", pos_weight=pos_weight) for n in labels]
        model = fit(x[train], part["train"], tasks, validation_split=0.0, **settings).model
        if objective is not None:
            tune_thresholds(model, make_data(x[val], part["val"], model.tasks), objective=objective)
        metrics = evaluate(model, x[test], part["test"])
        return float(np.mean([metrics[n]["f1"] for n in labels]))

    default = test_f1(None, None)
    tuned = test_f1("balanced", "f1")
    assert default < 0.05  # threshold 0.5 without weights: almost no positive is ever predicted
    assert tuned > default + 0.2
