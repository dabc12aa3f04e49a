"""The scikit-learn estimators: missing labels masked whatever marks them, the same model as
`taskmask.fit`, the masked score against a manual one, the estimator contract (clone, pickle,
random_state, scikit-learn's own checks), pipelines and searches, sparse input densified a
batch at a time; the docs page, the doctests and the text example run as written."""

from __future__ import annotations

import doctest
import gzip
import importlib
import importlib.util
import pickle
import pkgutil
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, f1_score, r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import taskmask.data._rows
import taskmask.sklearn as tm_sklearn
from taskmask.api import fit
from taskmask.model import MLPConfig
from taskmask.sklearn import MultiTaskClassifier, MultiTaskRegressor, make_masked_scorer
from taskmask.tasks import Task

ROOT = Path(__file__).resolve().parents[2]
SMALL: dict[str, Any] = {"hidden": (16,), "epochs": 5, "batch_size": 32, "lr": 1e-2}
ANIMALS = np.array(["cat", "dog", "owl"], dtype=object)

# Checks of scikit-learn's suite that these estimators cannot pass, with the reason. Empty:
# NaN in y is accepted as missing, yet an all-NaN or infinite y is still refused (no observed
# label / infinity), which is what check_supervised_y_no_nan asks; float64 inference keeps
# check_methods_subset_invariance exact.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Features and a label table with ~30 % of each column missing (NaN / None)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = pd.DataFrame(
        {
            "tox": (x[:, 0] > 0).astype(float),
            "animal": ANIMALS[np.digitize(x[:, 3], [-0.45, 0.45])],
            "sea": (x[:, 1] > 0).astype(float),
            "sunset": (x[:, 2] > 0).astype(float),
        }
    )
    for column in y:
        y[column] = y[column].mask(rng.random(n) < 0.3)
    return x, y


def _same_model(one: Any, two: Any) -> None:
    first, second = one.model_.state_dict(), two.model_.state_dict()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def _marked(y: pd.DataFrame, marker: Any) -> pd.DataFrame:
    """``y`` with every missing cell holding ``marker`` (object columns)."""
    out = y.astype(object)
    return out.mask(y.isna(), marker) if marker is not None else out.where(y.notna(), None)


# --- missing labels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "options"),
    [
        (None, {}),
        ("", {}),
        ("  ", {}),
        (pd.NA, {}),
        (-1, {"sentinel": -1}),
        (9.5, {"sentinel": 9.5}),
    ],
)
def test_the_missing_marker_changes_nothing(marker: Any, options: dict[str, Any]) -> None:
    x, y = _data()
    reference = MultiTaskClassifier(**SMALL, random_state=0).fit(x, y)
    other = MultiTaskClassifier(**SMALL, **options, random_state=0).fit(x, _marked(y, marker))
    _same_model(reference, other)
    pd.testing.assert_frame_equal(
        reference.history_.drop(columns="seconds"), other.history_.drop(columns="seconds")
    )
    np.testing.assert_array_equal(reference.predict(x), other.predict(x))
    assert reference.score(x, y) == other.score(x, _marked(y, marker))


def test_the_estimator_trains_the_model_taskmask_fit_trains() -> None:
    x, y = _data()
    tasks = [{"name": "scene", "kind": "multilabel", "columns": ["sea", "sunset"]}]
    clf = MultiTaskClassifier(tasks, **SMALL, random_state=3).fit(x, y)
    labels = {"scene": y[["sea", "sunset"]].to_numpy(), "tox": y["tox"], "animal": y["animal"]}
    direct = fit(
        x,
        labels,
        [
            Task(name="scene", kind="multilabel", labels=("sea", "sunset")),
            Task(name="tox", kind="binary"),
            Task(name="animal", kind="multiclass"),
        ],
        trunk=MLPConfig(hidden=(16,)),
        epochs=5,
        batch_size=32,
        lr=1e-2,
        seed=3,
        train_metrics=False,
        progress=False,
    )
    assert clf.tasks_ == direct.model.tasks
    for key, value in direct.model.state_dict().items():
        assert torch.equal(clf.model_.state_dict()[key], value), key


def test_score_is_the_mean_over_tasks_of_metrics_on_observed_labels() -> None:
    x, y = _data(seed=1)
    scene = {"name": "scene", "kind": "multilabel", "columns": ["sea", "sunset"]}
    clf = MultiTaskClassifier([scene], **SMALL, random_state=0).fit(x, y)
    pred = pd.DataFrame(clf.predict(x), columns=list(y.columns))

    def observed_accuracy(column: str) -> float:
        seen = y[column].notna()
        return accuracy_score(list(y[column][seen]), list(pred[column][seen]))

    scene_accuracy = (observed_accuracy("sea") + observed_accuracy("sunset")) / 2
    manual = np.mean([scene_accuracy, observed_accuracy("tox"), observed_accuracy("animal")])
    assert clf.score(x, y) == pytest.approx(manual, abs=1e-12)
    only_tox = y[["tox"]].join(y.drop(columns="tox").map(lambda _: None))
    assert clf.score(x, only_tox) == pytest.approx(observed_accuracy("tox"), abs=1e-12)


def test_regressor_score_is_observed_r2_and_text_columns_are_classes() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, 3))
    y = pd.DataFrame(
        {"a": x @ [1.0, 2.0, 0.0], "b": x[:, 2] * 3, "kind": ANIMALS[(x[:, 0] > 0).astype(int)]}
    )
    y.loc[rng.random(150) < 0.4, "a"] = np.nan
    y.loc[rng.random(150) < 0.4, "kind"] = None
    reg = MultiTaskRegressor(**SMALL, random_state=0).fit(x, y)
    assert [t.kind for t in reg.tasks_] == ["regression", "regression", "multiclass"]
    pred = reg.predict(x)
    assert pred.shape == (150, 3) and pred.dtype == object
    seen = y["a"].notna()
    manual = np.mean(
        [
            r2_score(y["a"][seen], pred[seen.to_numpy(), 0].astype(float)),
            r2_score(y["b"], pred[:, 1].astype(float)),
            accuracy_score(list(y["kind"].dropna()), list(pred[y["kind"].notna().to_numpy(), 2])),
        ]
    )
    assert reg.score(x, y) == pytest.approx(manual, abs=1e-12)


def test_masked_scorer_in_cross_val_score_equals_fold_by_fold_scores() -> None:
    x, y = _data(n=150, seed=4)
    macro_f1 = make_masked_scorer(f1_score, average="macro")
    folds = KFold(3, shuffle=True, random_state=0)
    clf = MultiTaskClassifier(**SMALL, random_state=0)
    scores = cross_val_score(clf, x, y, cv=folds, scoring=macro_f1)
    for score, (train, test) in zip(scores, folds.split(x), strict=True):
        fitted = clone(clf).fit(x[train], y.iloc[train])
        pred = pd.DataFrame(fitted.predict(x[test]), columns=list(y.columns))
        truth = y.iloc[test].reset_index(drop=True)
        per_column = []
        for column in y:
            seen = truth[column].notna()
            per_column.append(
                f1_score(list(truth[column][seen]), list(pred[column][seen]), average="macro")
            )
        assert score == pytest.approx(np.mean(per_column), abs=1e-12)


def test_probability_scorer_and_negated_losses() -> None:
    x, y = _data(seed=5)
    clf = MultiTaskClassifier(**SMALL, random_state=0).fit(x, y)
    from sklearn.metrics import log_loss, roc_auc_score

    auc = make_masked_scorer(roc_auc_score, response_method="predict_proba", multi_class="ovr")
    assert 0.5 < auc(clf, x, y) <= 1.0
    loss = make_masked_scorer(log_loss, response_method="predict_proba", greater_is_better=False)
    assert loss(clf, x, y) < 0
    with pytest.raises(ValueError, match="response_method"):
        make_masked_scorer(f1_score, response_method="decision_function")(clf, x, y)
    reg = MultiTaskRegressor(**SMALL, random_state=0).fit(x, x[:, 0])
    with pytest.raises(ValueError, match="no predict_proba"):
        auc(reg, x, x[:, 0])


# --- the estimator contract --------------------------------------------------------------


def test_clone_and_pickle_round_trips_predict_identically() -> None:
    x, y = _data()
    clf = MultiTaskClassifier(**SMALL, random_state=0, weighting="uncertainty").fit(x, y)
    fresh = clone(clf)
    assert fresh.get_params() == clf.get_params() and not hasattr(fresh, "model_")
    with pytest.raises(NotFittedError):
        fresh.predict(x)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(x), clf.predict(x))
    for one, two in zip(again.predict_proba(x), clf.predict_proba(x), strict=True):
        np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(fresh.fit(x, y).predict(x), clf.predict(x))
    _same_model(fresh, clf)


def test_pickles_naming_the_public_module_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pickles from before ``taskmask.sklearn`` became a package name its classes there."""
    x, y = _data()
    clf = MultiTaskRegressor(**SMALL, random_state=0).fit(x, y.drop(columns="animal"))
    for cls in (MultiTaskRegressor, tm_sklearn.TaskColumns):
        monkeypatch.setattr(cls, "__module__", "taskmask.sklearn")
    old = pickle.dumps(clf)
    monkeypatch.undo()
    assert b"taskmask.sklearn" in old and b"taskmask.sklearn._" not in old
    again = pickle.loads(old)
    assert type(again) is MultiTaskRegressor and type(again.layout_[0]) is tm_sklearn.TaskColumns
    np.testing.assert_array_equal(again.predict(x), clf.predict(x))


def test_random_state() -> None:
    x, y = _data()
    one, two = (MultiTaskClassifier(**SMALL, random_state=7).fit(x, y) for _ in range(2))
    _same_model(one, two)
    other = MultiTaskClassifier(**SMALL, random_state=8).fit(x, y)
    assert not torch.equal(one.model_.heads["tox"].weight, other.model_.heads["tox"].weight)
    a, b = (MultiTaskClassifier(**SMALL).fit(x, y) for _ in range(2))
    assert not torch.equal(a.model_.heads["tox"].weight, b.model_.heads["tox"].weight)
    state = np.random.RandomState(0)
    c = MultiTaskClassifier(**SMALL, random_state=state).fit(x, y)
    d = MultiTaskClassifier(**SMALL, random_state=np.random.RandomState(0)).fit(x, y)
    _same_model(c, d)


def test_set_params_and_fitted_attributes() -> None:
    x, y = _data()
    clf = MultiTaskClassifier(**SMALL).set_params(random_state=0, hidden=8, epochs=2)
    assert clf.get_params()["hidden"] == 8
    clf.fit(pd.DataFrame(x, columns=["a", "b", "c", "d"]), y)
    assert clf.n_features_in_ == 4 and list(clf.feature_names_in_) == ["a", "b", "c", "d"]
    assert clf.model_.feature_names == ("a", "b", "c", "d")
    assert clf.target_names_ == ("tox", "animal", "sea", "sunset") and clf.n_outputs_ == 4
    assert [list(c) for c in clf.classes_] == [[0, 1], ["cat", "dog", "owl"], [0, 1], [0, 1]]
    assert len(clf.history_) == 2 and "train/loss" in clf.history_


def test_one_dimensional_y_gives_one_dimensional_outputs() -> None:
    x, y = _data()
    clf = MultiTaskClassifier(**SMALL, random_state=0).fit(x, y["animal"])
    assert clf.predict(x).shape == (len(x),) and clf.predict_proba(x).shape == (len(x), 3)
    assert list(clf.classes_) == ["cat", "dog", "owl"]
    reg = MultiTaskRegressor(**SMALL, random_state=0).fit(x, x[:, 0] * 2)
    assert reg.predict(x).shape == (len(x),) and reg.predict(x).dtype == np.float64


def test_predictions_do_not_depend_on_the_batch() -> None:
    x, y = _data()
    clf = MultiTaskClassifier(**SMALL, random_state=0).fit(x, y)
    full = clf.predict_proba(x)
    for one, part in zip(full, clf.predict_proba(x[7:9]), strict=True):
        np.testing.assert_array_equal(one[7:9], part)


# --- inference of task kinds and explicit tasks -------------------------------------------


def test_inferred_kinds() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = pd.DataFrame(
        {
            "flag": rng.integers(0, 2, 40).astype(bool),
            "rating": rng.integers(1, 4, 40),
            "pm": rng.choice([-1, 1], 40),
            "colour": rng.choice(["red", "blue"], 40),
        }
    )
    clf = MultiTaskClassifier(epochs=1, random_state=0).fit(x, y)
    assert [t.kind for t in clf.tasks_] == ["binary", "multiclass", "multiclass", "multiclass"]
    assert [list(c) for c in clf.classes_[1:]] == [[1, 2, 3], [-1, 1], ["blue", "red"]]
    assert set(clf.predict(x)[:, 2]) <= {-1, 1}  # -1 is a class unless sentinel=-1
    with pytest.raises(ValueError, match="Unknown label type"):
        MultiTaskClassifier(epochs=1).fit(x, rng.normal(size=40))


def test_tasks_name_columns_by_position_or_name_and_the_rest_are_inferred() -> None:
    x, y = _data()
    array = y[["sea", "sunset", "tox"]].to_numpy()
    scene = {"name": "scene", "kind": "multilabel", "columns": [0, 1]}
    clf = MultiTaskClassifier([scene], **SMALL, random_state=0).fit(x, array)
    assert [(e.task.name, e.columns) for e in clf.layout_] == [
        ("scene", ("y0", "y1")),
        ("y2", ("y2",)),
    ]
    assert clf.predict(x).shape == (len(x), 3)
    tox = Task(name="tox", kind="binary", weight=2.0)
    clf = MultiTaskClassifier([tox], **SMALL, random_state=0).fit(x, y)
    assert clf.tasks_[0].weight == 2.0 and clf.tasks_[0].name == "tox"


def test_a_declared_task_uses_its_sentinel() -> None:
    x, y = _data()
    minus = y.fillna({"tox": -1.0})
    declared = MultiTaskClassifier([Task(name="tox", kind="binary")], **SMALL, random_state=0)
    _same_model(declared.fit(x, minus), MultiTaskClassifier(**SMALL, random_state=0).fit(x, y))


@pytest.mark.parametrize(
    ("y", "tasks", "message"),
    [
        (None, None, "requires y to be passed, but the target y is None"),
        (np.zeros(5), None, "X has 120 rows but y has 5"),
        (np.full(120, np.nan), None, "no observed label"),
        (np.full(120, np.inf), None, "infinity"),
        (np.zeros((120, 2)), [{"name": "t", "kind": "binary", "column": "z"}], "no column"),
        (
            np.zeros((120, 2)),
            [
                {"name": "a", "kind": "binary", "column": 0},
                {"name": "b", "kind": "binary", "column": 0},
            ],
            "more than one task",
        ),
        (np.zeros((120, 2)), ["tox"], "expected taskmask.Task objects or dicts"),
        (np.array(["a"] * 120, dtype=object), None, "1 class"),
    ],
)
def test_bad_targets_are_value_errors_that_say_why(y: Any, tasks: Any, message: str) -> None:
    x, _ = _data()
    with pytest.raises(ValueError, match=message):
        MultiTaskClassifier(tasks, **SMALL).fit(x, y)


def test_bad_parameters_are_value_errors_naming_them() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="epochs"):
        MultiTaskClassifier(epochs=0).fit(x, y)
    with pytest.raises(ValueError, match="unknown weighting"):
        MultiTaskClassifier(**SMALL, weighting="nope").fit(x, y)


# --- pipelines, searches, sparse input ---------------------------------------------------


def _people(n: int = 150) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    people = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.lognormal(10, 0.5, n),
            "city": rng.choice(["oslo", "rome", "lima"], n),
        }
    )
    targets = pd.DataFrame(
        {
            "senior": (people["age"] > 50).astype(float).mask(rng.random(n) < 0.3),
            "capital": np.where(people["city"] == "lima", "yes", "no"),
        }
    )
    return people, targets


def _pipeline(**options: Any) -> Any:
    prepare = ColumnTransformer(
        [
            ("numbers", StandardScaler(), ["age", "income"]),
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    return make_pipeline(prepare, MultiTaskClassifier(**{**SMALL, **options}))


def test_pipeline_with_column_transformer() -> None:
    people, targets = _people()
    pipe = _pipeline(standardize=False, epochs=20, random_state=0).fit(people, targets)
    assert pipe.predict(people.iloc[:4]).shape == (4, 2)
    assert pipe.score(people, targets) > 0.8
    assert pipe[-1].n_features_in_ == 5


def test_grid_search_over_hidden_sizes_and_weighting() -> None:
    people, targets = _people()
    grid = {
        "multitaskclassifier__hidden": [(4,), (16,)],
        "multitaskclassifier__weighting": ["static", "uncertainty"],
    }
    search = GridSearchCV(
        _pipeline(random_state=0), grid, cv=KFold(2, shuffle=True, random_state=0)
    )
    search.fit(people, targets)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert len(search.cv_results_["params"]) == 4
    assert (
        search.best_estimator_[-1].weighting
        == search.best_params_["multitaskclassifier__weighting"]
    )
    assert 0.0 <= make_masked_scorer(accuracy_score)(search, people, targets) <= 1.0


@pytest.mark.parametrize("options", [{}, {"standardize": False}, {"validation_split": 0.25}])
def test_sparse_input_trains_the_same_model_as_dense(options: dict[str, Any]) -> None:
    x, y = _data()
    x[np.abs(x) < 0.8] = 0.0
    dense = MultiTaskClassifier(**SMALL, **options, random_state=0).fit(x, y)
    sparse = MultiTaskClassifier(**SMALL, **options, random_state=0).fit(sp.csr_matrix(x), y)
    _same_model(dense, sparse)
    for one, two in zip(
        dense.predict_proba(x), sparse.predict_proba(sp.csc_matrix(x)), strict=True
    ):
        np.testing.assert_array_equal(one, two)
    pd.testing.assert_frame_equal(
        dense.history_.drop(columns="seconds"), sparse.history_.drop(columns="seconds")
    )


def test_sparse_input_is_densified_one_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(n=400)
    x[np.abs(x) < 1.0] = 0.0
    densified: list[int] = []
    toarray = sp.csr_matrix.toarray

    def spy(self: sp.csr_matrix, *args: Any, **kwargs: Any) -> np.ndarray:
        densified.append(self.shape[0])
        return toarray(self, *args, **kwargs)

    monkeypatch.setattr(sp.csr_matrix, "toarray", spy)
    monkeypatch.setattr(taskmask.data._rows, "_DENSE_CHUNK", 50 * x.shape[1])
    clf = MultiTaskClassifier(**SMALL, random_state=0).fit(sp.csr_matrix(x), y)
    # training batches, and chunks of at most 50 rows for the feature moments
    assert SMALL["batch_size"] in densified and max(densified) == 50
    densified.clear()
    clf.predict(sp.csr_matrix(x))
    assert max(densified) == 50


# --- docs, doctests, example -------------------------------------------------------------


def test_doctests() -> None:
    modules = [tm_sklearn] + [
        importlib.import_module(f"taskmask.sklearn.{m.name}")
        for m in pkgutil.iter_modules(tm_sklearn.__path__)
    ]
    results = [doctest.testmod(module) for module in modules]
    assert sum(r.failed for r in results) == 0
    assert sum(r.attempted for r in results) >= 3  # the two estimators and make_masked_scorer


def test_docs_page_runs_as_written() -> None:
    page = ROOT / "docs" / "sklearn.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(compile("".join(blocks), str(page), "exec"), namespace)
    assert namespace["labels"].shape == (3, 2) and len(namespace["probs"]) == 2
    assert namespace["task_kinds"] == {
        "scene": "multilabel",
        "toxic": "binary",
        "topic": "multiclass",
    }
    assert namespace["accuracy"] > 0.8 and namespace["pipe_accuracy"] > 0.8
    assert set(namespace["best"]) == {
        "multitaskclassifier__hidden",
        "multitaskclassifier__weighting",
    }
    assert (
        np.isfinite(namespace["f1_per_fold"]).all() and np.isfinite(namespace["auc_per_fold"]).all()
    )
    assert namespace["guess"].shape == (2, 2)


def _example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "sklearn_text", ROOT / "examples" / "sklearn_text.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_goemotions(folder: Path, n: int = 80) -> None:
    """GoEmotions' file layout with made-up rows: 28 emotions, ids as comma lists."""
    rng = np.random.default_rng(0)
    emotions = [f"emotion{k}" for k in range(28)]
    folder.mkdir()
    (folder / "emotions.txt").write_text("\n".join(emotions))
    words = ["good", "bad", "happy", "sad", "film", "food", "really", "very"]
    for split in ("train", "dev", "test"):
        lines = []
        for i in range(n):
            ids = sorted(set(rng.integers(0, 28, rng.integers(1, 3)).tolist()))
            text = " ".join(rng.choice(words, 5))
            lines.append(f"{text}\t{','.join(map(str, ids))}\tid{split}{i}\n")
        with gzip.open(folder / f"{split}.tsv.gz", "wt") as handle:
            handle.writelines(lines)


def test_text_example_smoke_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_goemotions(tmp_path / "goemotions")
    assert (
        _example().main(["--smoke", "--epochs", "2", "--data", str(tmp_path / "goemotions")]) == 0
    )
    out = capsys.readouterr().out
    assert "of 2,240 labels observed" in out and "emotion27" in out and "macro over" in out


def test_text_example_skips_without_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _example().main(["--data", str(tmp_path / "absent")]) == 0
    assert "not found" in capsys.readouterr().out


@pytest.mark.slow
def test_text_example_smoke_run_on_goemotions(capsys: pytest.CaptureFixture[str]) -> None:
    example = _example()
    if not (example.DATA / "train.tsv.gz").is_file():
        pytest.skip(f"GoEmotions is not in {example.DATA}")
    assert example.main(["--smoke"]) == 0
    assert "macro over" in capsys.readouterr().out


# --- scikit-learn's own checks -------------------------------------------------------------


@pytest.mark.slow
@parametrize_with_checks(
    [MultiTaskClassifier(), MultiTaskRegressor()],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_scikit_learn_checks(estimator: Any, check: Any) -> None:
    check(estimator)
