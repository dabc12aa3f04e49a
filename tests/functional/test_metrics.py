"""Masked metrics equal scikit-learn's on the observed subset; undefined values stay undefined."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn.metrics as skm
import torch

from taskmask.errors import TaskmaskError
from taskmask.functional._metrics import (
    BINARY_METRICS,
    MULTILABEL_METRICS,
    Undefined,
    binary_metrics,
    fit_thresholds,
    metric_as_float,
    multiclass_metrics,
    multilabel_metrics,
    regression_metrics,
    to_jsonable,
)
from taskmask.tasks import Task, higher_is_better, task_metrics

SEEDS = [0, 1, 2]
LABELS = ("a", "b", "c", "d")


def _binary_data(seed: int, n: int = 120, k: int = 4):
    rng = np.random.default_rng(seed)
    probs = rng.random((n, k))
    target = (rng.random((n, k)) < 0.3 + 0.4 * probs).astype(np.float64)  # informative
    observed = rng.random((n, k)) > 0.4
    return probs, target, observed


def _garbage(array: np.ndarray, observed: np.ndarray, seed: int) -> np.ndarray:
    """A copy with every missing entry replaced by NaN, inf or a wild number."""
    rng = np.random.default_rng(seed + 100)
    junk = rng.choice([np.nan, np.inf, -np.inf, -7.0, 1e9, 0.5], size=array.shape)
    return np.where(observed, array, junk)


def _sklearn_binary(probs, target, threshold):
    pred = (probs >= threshold).astype(float)
    return {
        "accuracy": skm.accuracy_score(target, pred),
        "precision": skm.precision_score(target, pred),
        "recall": skm.recall_score(target, pred),
        "f1": skm.f1_score(target, pred),
        "roc_auc": skm.roc_auc_score(target, probs),
        "pr_auc": skm.average_precision_score(target, probs),
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_matches_sklearn_on_observed_subset(seed):
    probs, target, observed = _binary_data(seed)
    thresholds = (0.5, 0.3, 0.6, 0.45)
    result = binary_metrics(probs, target, observed, labels=LABELS, thresholds=thresholds)
    for j, label in enumerate(LABELS):
        seen = observed[:, j]
        expected = _sklearn_binary(probs[seen, j], target[seen, j], thresholds[j])
        for metric, value in expected.items():
            assert result[f"{metric}/{label}"] == pytest.approx(value, abs=1e-12)
        assert result[f"n_observed/{label}"] == float(seen.sum())
    for metric in BINARY_METRICS:
        per_label = [result[f"{metric}/{label}"] for label in LABELS]
        assert result[f"{metric}_macro"] == pytest.approx(np.mean(per_label), abs=1e-12)
        assert result[f"{metric}_macro_n_labels"] == 4.0
    assert "roc_auc" not in result  # plain keys only for a single label


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_ignores_missing_entries(seed):
    probs, target, observed = _binary_data(seed)
    kwargs = {"labels": LABELS, "thresholds": (0.5,) * 4}
    clean = binary_metrics(probs, target, observed, **kwargs)
    dirty = binary_metrics(
        _garbage(probs, observed, seed), _garbage(target, observed, seed + 1), observed, **kwargs
    )
    assert dirty == clean


def test_binary_single_label_has_plain_keys():
    probs, target, observed = _binary_data(3, k=1)
    result = binary_metrics(probs, target, observed, labels=("x",), thresholds=(0.5,))
    for metric in (*BINARY_METRICS, "n_observed"):
        assert result[metric] == result[f"{metric}/x"]
    assert result["roc_auc"] == result["roc_auc_macro"]


def test_binary_undefined_cases_are_excluded_from_macro():
    probs, target, observed = _binary_data(4)
    target[:, 1] = 0.0  # b: only negatives observed
    observed[:, 2] = False  # c: nothing observed
    probs[:, 3] = 0.0  # d: nothing predicted positive
    result = binary_metrics(probs, target, observed, labels=LABELS, thresholds=(0.5,) * 4)
    for metric in ("roc_auc", "pr_auc", "recall"):
        assert isinstance(result[f"{metric}/b"], Undefined)
    assert isinstance(result["f1/b"], float)  # predicted positives exist, so F1 is 0, defined
    assert all(isinstance(result[f"{m}/c"], Undefined) for m in BINARY_METRICS)
    assert result["n_observed/c"] == 0.0
    assert isinstance(result["precision/d"], Undefined)
    assert result["precision/d"].reason
    roc = [result["roc_auc/a"], result["roc_auc/d"]]
    assert result["roc_auc_macro"] == pytest.approx(np.mean(roc), abs=1e-12)
    assert result["roc_auc_macro_n_labels"] == 2.0
    precision = [result["precision/a"], result["precision/b"]]
    assert result["precision_macro"] == pytest.approx(np.mean(precision), abs=1e-12)
    assert result["accuracy_macro_n_labels"] == 3.0


def test_macro_is_undefined_when_no_label_is_defined():
    probs, target, observed = _binary_data(5, k=2)
    target[:] = 1.0
    result = binary_metrics(probs, target, observed, labels=("a", "b"), thresholds=(0.5, 0.5))
    assert isinstance(result["roc_auc_macro"], Undefined)
    assert result["roc_auc_macro_n_labels"] == 0.0
    assert isinstance(result["accuracy_macro"], float)


def test_nothing_observed_gives_no_number_anywhere():
    probs, target, _ = _binary_data(6, k=1)
    observed = np.zeros_like(target, dtype=bool)
    result = binary_metrics(probs, target, observed, labels=("x",), thresholds=(0.5,))
    for metric in BINARY_METRICS:
        assert isinstance(result[metric], Undefined)
        assert isinstance(result[f"{metric}_macro"], Undefined)
    assert result["n_observed"] == 0.0


def _sklearn_multilabel(probs, target, thresholds):
    pred = (probs >= np.asarray(thresholds)).astype(int)
    target = target.astype(int)
    return {
        "exact_match": skm.accuracy_score(target, pred),
        "hamming_loss": skm.hamming_loss(target, pred),
        "precision_micro": skm.precision_score(target, pred, average="micro"),
        "recall_micro": skm.recall_score(target, pred, average="micro"),
        "f1_micro": skm.f1_score(target, pred, average="micro"),
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_matches_sklearn_when_all_observed(seed):
    probs, target, _ = _binary_data(seed)
    observed = np.ones_like(target, dtype=bool)
    thresholds = (0.5, 0.3, 0.6, 0.45)
    result = multilabel_metrics(probs, target, observed, thresholds=thresholds)
    for metric, value in _sklearn_multilabel(probs, target, thresholds).items():
        assert result[metric] == pytest.approx(value, abs=1e-12), metric
    assert result["n_complete"] == 120.0
    assert result["n_observed"] == 480.0


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_uses_complete_rows_and_observed_entries_only(seed):
    probs, target, observed = _binary_data(seed)
    observed[:10] = True  # at least ten complete rows
    thresholds = (0.5,) * 4
    result = multilabel_metrics(probs, target, observed, thresholds=thresholds)
    complete = observed.all(axis=1)
    whole = _sklearn_multilabel(probs[complete], target[complete], thresholds)
    assert result["exact_match"] == pytest.approx(whole["exact_match"], abs=1e-12)
    assert result["n_complete"] == float(complete.sum())
    # micro metrics and Hamming loss pool the observed entries, as one long binary label
    y, p = target[observed], (probs[observed] >= 0.5).astype(float)
    assert result["hamming_loss"] == pytest.approx(1 - skm.accuracy_score(y, p), abs=1e-12)
    assert result["precision_micro"] == pytest.approx(skm.precision_score(y, p), abs=1e-12)
    assert result["recall_micro"] == pytest.approx(skm.recall_score(y, p), abs=1e-12)
    assert result["f1_micro"] == pytest.approx(skm.f1_score(y, p), abs=1e-12)
    dirty = multilabel_metrics(
        _garbage(probs, observed, seed),
        _garbage(target, observed, seed + 1),
        observed,
        thresholds=thresholds,
    )
    assert dirty == result


def test_multilabel_pinned_values():
    probs = np.array([[0.9, 0.1, 0.7], [0.2, 0.8, 0.4], [0.6, 0.6, 0.6]])
    target = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, np.nan, 0.0]])
    observed = ~np.isnan(target)
    result = multilabel_metrics(probs, target, observed, thresholds=(0.5, 0.5, 0.5))
    # complete rows 0 and 1: row 0 exact, row 1 misses its third label
    assert result["exact_match"] == 0.5
    assert result["n_complete"] == 2.0
    # 8 observed entries, 2 wrong: (1, 2) false negative, (2, 2) false positive; tp = 4
    assert result["hamming_loss"] == 2 / 8
    assert result["precision_micro"] == pytest.approx(4 / 5, abs=1e-12)
    assert result["recall_micro"] == pytest.approx(4 / 5, abs=1e-12)
    assert result["f1_micro"] == pytest.approx(4 / 5, abs=1e-12)


def test_multilabel_undefined_cases():
    probs, target, observed = _binary_data(7)
    observed[:, 0] = False  # no complete row
    result = multilabel_metrics(probs, target, observed, thresholds=(1.01,) * 4)
    assert isinstance(result["exact_match"], Undefined)
    assert result["n_complete"] == 0.0
    assert isinstance(result["precision_micro"], Undefined)  # nothing predicted positive
    assert result["recall_micro"] == 0.0
    assert isinstance(result["hamming_loss"], float)
    nothing = multilabel_metrics(probs, target, np.zeros_like(observed), thresholds=(0.5,) * 4)
    assert all(isinstance(nothing[m], Undefined) for m in MULTILABEL_METRICS)
    assert nothing["n_observed"] == 0.0
    with pytest.raises(TaskmaskError, match="thresholds"):
        multilabel_metrics(probs, target, observed, thresholds=(0.5,))
    with pytest.raises(TaskmaskError, match=r"\(120, 3\)"):
        multilabel_metrics(probs[:, :3], target, observed, thresholds=(0.5,) * 3)


def _multiclass_data(seed: int, n: int = 150, c: int = 4):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(c), size=n)
    target = np.where(rng.random(n) < 0.5, probs.argmax(axis=1), rng.integers(0, c, n))
    observed = rng.random(n) > 0.4
    return probs, target, observed


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_matches_sklearn_on_observed_subset(seed):
    probs, target, observed = _multiclass_data(seed)
    classes = ("w", "x", "y", "z")
    result = multiclass_metrics(probs, target, observed, classes=classes)
    y, pred = target[observed], probs[observed].argmax(axis=1)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    f1_macro = skm.f1_score(y, pred, labels=np.unique(y), average="macro")
    assert result["f1_macro"] == pytest.approx(f1_macro, abs=1e-12)
    report = skm.precision_recall_fscore_support(y, pred, labels=range(4))
    for i, name in enumerate(classes):
        for metric, values in zip(("precision", "recall", "f1", "support"), report, strict=True):
            assert result[f"{metric}/{name}"] == pytest.approx(values[i], abs=1e-12)
    assert result["n_observed"] == float(observed.sum())


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_ignores_missing_entries(seed):
    probs, target, observed = _multiclass_data(seed)
    clean = multiclass_metrics(probs, target, observed, classes=("w", "x", "y", "z"))
    dirty_probs = _garbage(probs, observed[:, None] & np.ones_like(probs, bool), seed)
    dirty_target = np.where(observed, target, -99)
    dirty = multiclass_metrics(dirty_probs, dirty_target, observed, classes=("w", "x", "y", "z"))
    assert dirty == clean


def test_multiclass_undefined_per_class():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.1, 0.9, 0.0]])
    target = np.array([0, 1, 1, 2])
    observed = np.array([True, True, True, False])
    result = multiclass_metrics(probs, target, observed, classes=("a", "b", "c"))
    assert isinstance(result["precision/c"], Undefined)  # never predicted
    assert isinstance(result["recall/c"], Undefined)  # absent from observed targets
    assert isinstance(result["f1/c"], Undefined)
    assert result["support/c"] == 0.0
    assert result["f1_macro_n_labels"] == 2.0
    expected = skm.f1_score([0, 1, 1], [0, 1, 0], average="macro")
    assert result["f1_macro"] == pytest.approx(expected, abs=1e-12)


def test_multiclass_nothing_observed():
    probs, target, _ = _multiclass_data(7)
    result = multiclass_metrics(probs, target, np.zeros(len(target), bool), classes="wxyz")
    assert isinstance(result["accuracy"], Undefined)
    assert isinstance(result["f1_macro"], Undefined)
    assert result["n_observed"] == 0.0


def test_multiclass_rejects_bad_class_index():
    probs, target, observed = _multiclass_data(8)
    target[np.argmax(observed)] = 4
    with pytest.raises(TaskmaskError, match="class indices"):
        multiclass_metrics(probs, target, observed, classes="wxyz")


def _regression_data(seed: int, n: int = 80, k: int = 3):
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(n, k))
    values = target + rng.normal(scale=0.5, size=(n, k))
    observed = rng.random((n, k)) > 0.4
    return values, target, observed


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_matches_sklearn_on_observed_subset(seed):
    values, target, observed = _regression_data(seed)
    names = ("u", "v", "w")
    result = regression_metrics(values, target, observed, names=names)
    reference = {
        "mse": skm.mean_squared_error,
        "mae": skm.mean_absolute_error,
        "r2": skm.r2_score,
    }
    for metric, fn in reference.items():
        per_output = []
        for j, name in enumerate(names):
            seen = observed[:, j]
            per_output.append(fn(target[seen, j], values[seen, j]))
            assert result[f"{metric}/{name}"] == pytest.approx(per_output[-1], abs=1e-12)
        assert result[f"{metric}_macro"] == pytest.approx(np.mean(per_output), abs=1e-12)
    dirty = regression_metrics(
        _garbage(values, observed, seed), _garbage(target, observed, seed), observed, names=names
    )
    assert dirty == result


def test_regression_undefined_r2_and_plain_keys():
    values, target, observed = _regression_data(9, k=2)
    observed[:, 0] = False
    observed[0, 0] = True  # u: a single observed value
    target[:, 1] = 2.0  # v: constant target
    result = regression_metrics(values, target, observed, names=("u", "v"))
    assert isinstance(result["r2/u"], Undefined)
    assert isinstance(result["r2/v"], Undefined)
    assert isinstance(result["r2_macro"], Undefined)
    assert result["mse/u"] == pytest.approx((values[0, 0] - target[0, 0]) ** 2)
    single = regression_metrics(values[:, 1:], target[:, 1:], observed[:, 1:], names=("v",))
    assert single["mse"] == single["mse/v"] == result["mse/v"]


@pytest.mark.parametrize("seed", SEEDS)
def test_fit_thresholds_beats_half(seed):
    probs, target, observed = _binary_data(seed)
    thresholds = fit_thresholds(probs, target, observed)
    fitted = binary_metrics(probs, target, observed, labels=LABELS, thresholds=thresholds)
    half = binary_metrics(probs, target, observed, labels=LABELS, thresholds=(0.5,) * 4)
    for label in LABELS:
        assert fitted[f"f1/{label}"] >= half[f"f1/{label}"]
    dirty = fit_thresholds(_garbage(probs, observed, seed), target, observed)
    assert dirty == thresholds


def test_fit_thresholds_known_optimum_and_ties():
    probs = np.array([[0.1, 0.1], [0.4, 0.2], [0.35, 0.3], [0.8, 0.9], [0.99, 0.5]])
    target = np.array([[0, 1], [0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    observed = np.array([[1, 1], [1, 1], [1, 1], [1, 1], [0, 0]], dtype=bool)
    # a: F1 is 2/3, 0.8, 1/2, 2/3 at 0.1, 0.35, 0.4, 0.8. b: 2/3 at 0.1 and at 0.9 (a tie).
    assert fit_thresholds(probs, target, observed) == (0.35, 0.1)


def test_fit_thresholds_keeps_half_without_positives():
    probs, target, observed = _binary_data(10, k=2)
    target[:, 0] = 0.0
    observed[:, 1] = False
    assert fit_thresholds(probs, target, observed) == (0.5, 0.5)


@pytest.mark.parametrize(
    ("shapes", "call"),
    [
        (((5, 2), (5, 3), (5, 3)), "binary"),
        (((5, 1), (5,), (5,)), "binary"),
        (((5, 1), (5, 1), (5,)), "regression"),
        (((5, 3), (5, 1), (5,)), "multiclass"),
        (((5, 3), (4,), (4,)), "multiclass"),
        (((5, 2), (5, 2), (5,)), "fit"),
    ],
)
def test_shape_mismatch_raises(shapes, call):
    preds, target, observed = (np.zeros(s) for s in shapes)
    observed = observed.astype(bool)
    with pytest.raises(TaskmaskError, match=r"\(5"):
        if call == "binary":
            binary_metrics(preds, target, observed, labels=["a", "b"], thresholds=[0.5, 0.5])
        elif call == "regression":
            regression_metrics(preds, target, observed, names=["a"])
        elif call == "multiclass":
            multiclass_metrics(preds, target, observed, classes="abc")
        else:
            fit_thresholds(preds, target, observed)


def test_names_and_observed_dtype_are_checked():
    probs, target, observed = _binary_data(11, k=2)
    with pytest.raises(TaskmaskError, match="labels"):
        binary_metrics(probs, target, observed, labels=["a"], thresholds=[0.5, 0.5])
    with pytest.raises(TaskmaskError, match="thresholds"):
        binary_metrics(probs, target, observed, labels=["a", "b"], thresholds=[0.5])
    with pytest.raises(TaskmaskError, match="bool"):
        binary_metrics(probs, target, observed * 1.0, labels=["a", "b"], thresholds=[0.5, 0.5])


def test_task_metrics_dispatch_binary_and_multilabel():
    probs, target, observed = _binary_data(12)
    observed[:, 3] = False  # an undefined label must come through as Undefined
    logits = torch.logit(torch.from_numpy(probs))
    tensors = (torch.from_numpy(target).float(), torch.from_numpy(observed))
    task = Task(name="m", kind="multilabel", labels=LABELS, threshold=(0.5, 0.3, 0.6, 0.45))
    expected = binary_metrics(probs, target, observed, labels=LABELS, thresholds=task.thresholds())
    result = task_metrics(task, logits.float(), *tensors)
    sets = multilabel_metrics(probs, target, observed, thresholds=task.thresholds())
    assert result.keys() == expected.keys() | sets.keys()
    expected = sets | expected
    for key, value in expected.items():  # float32 logits: close, not equal
        if isinstance(value, Undefined):
            assert result[key] == value
        else:
            assert result[key] == pytest.approx(value, abs=1e-6)
    binary = Task(name="t", kind="binary", threshold=0.7)
    one = task_metrics(binary, logits[:, :1], tensors[0][:, :1], tensors[1][:, :1])
    ref = binary_metrics(
        probs[:, :1], target[:, :1], observed[:, :1], labels=["t"], thresholds=[0.7]
    )
    assert one["f1/t"] == pytest.approx(ref["f1"], abs=1e-12)
    assert one["roc_auc"] == pytest.approx(ref["roc_auc/t"], abs=1e-12)


def test_task_metrics_dispatch_multiclass_and_regression():
    probs, target, observed = _multiclass_data(13)
    task = Task(name="c", kind="multiclass", labels=("w", "x", "y", "z"))
    logits = torch.log(torch.from_numpy(probs)) + 3.0  # softmax gives probs back
    result = task_metrics(task, logits, torch.from_numpy(target), torch.from_numpy(observed))
    assert result == multiclass_metrics(probs, target, observed, classes=task.labels)
    values, target, observed = _regression_data(13, k=2)
    task = Task(name="r", kind="regression", n_outputs=2)
    result = task_metrics(
        task, torch.from_numpy(values), torch.from_numpy(target), torch.from_numpy(observed)
    )
    expected = regression_metrics(values, target, observed, names=("r_0", "r_1"))
    assert result.keys() == expected.keys()
    assert result["mse_macro"] == pytest.approx(expected["mse_macro"], abs=1e-12)


def test_to_jsonable_and_metric_as_float():
    metrics = {"f1": 0.25, "roc_auc": Undefined("only one class observed")}
    jsonable = to_jsonable(metrics)
    assert jsonable == {"f1": 0.25, "roc_auc": {"undefined": "only one class observed"}}
    assert json.loads(json.dumps(jsonable, allow_nan=False)) == jsonable
    assert metric_as_float(0.25) == 0.25
    assert np.isnan(metric_as_float(Undefined("x")))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("loss", False),
        ("val_loss", False),
        ("mse/knee_x", False),
        ("mae_macro", False),
        ("hamming_loss", False),
        ("pose.mse_macro", False),
        ("roc_auc", True),
        ("f1_macro", True),
        ("accuracy/a", True),
        ("r2/mse", True),
        ("pr_auc_macro", True),
    ],
)
def test_higher_is_better(name, expected):
    assert higher_is_better(name) is expected
