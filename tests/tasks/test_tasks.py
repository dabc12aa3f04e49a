"""Task specs: validation at construction, resolved output names and widths, name checks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from taskmask.errors import TaskmaskError
from taskmask.tasks import Task, check_unique_names


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "t", "kind": "multilabel", "labels": ("a", "b", "a")}, "unique"),
        ({"name": "t", "kind": "multiclass", "labels": ("x", "x")}, "unique"),
        ({"name": "t", "kind": "regression", "pos_weight": 2.0}, "pos_weight"),
        (
            {"name": "t", "kind": "multiclass", "labels": ("a", "b"), "pos_weight": 1.0},
            "pos_weight",
        ),
        ({"name": "t", "kind": "binary", "labels": ("yes", "no")}, "one label"),
        ({"name": "t", "kind": "multiclass", "labels": ("only",)}, "at least 2"),
        ({"name": "t", "kind": "multilabel", "labels": ("a", "b"), "n_outputs": 3}, "n_outputs=3"),
    ],
)
def test_invalid_spec_raises_validation_error_naming_the_task(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Task(**spec)
    text = str(info.value)
    assert message in text
    assert f"task {spec['name']!r}" in text


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "", "kind": "binary"},
        {"name": "t", "kind": "ordinal"},
        {"name": "t", "kind": "binary", "weight": -0.5},
        {"name": "t", "kind": "regression", "huber_delta": 0.0},
        {"name": "t", "kind": "regression", "n_outputs": 0},
        {"name": "t", "kind": "regression", "loss": "cauchy"},
        {"name": "t", "kind": "binary", "pos_weight": "auto"},
        {"name": "t", "kind": "binary", "unknown_field": 1},
    ],
)
def test_out_of_range_fields_raise_validation_error(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Task(**spec)


def test_task_is_frozen() -> None:
    task = Task(name="t", kind="binary")
    with pytest.raises(ValidationError):
        task.weight = 2.0  # type: ignore[misc]
    assert task.weight == 1.0


@pytest.mark.parametrize(
    "task",
    [
        Task(name="b", kind="binary", pos_weight="balanced"),
        Task(name="m", kind="multilabel", labels=("x", "y"), pos_weight=(1.0, 2.5)),
        Task(name="m", kind="multilabel", labels=("x", "y"), threshold=(0.2, 0.7)),
        Task(name="c", kind="multiclass", labels=("cat", "dog"), attach_to="layer1"),
        Task(name="r", kind="regression", n_outputs=2, loss="huber", huber_delta=0.5, sentinel=-9),
    ],
)
def test_json_round_trip_gives_an_equal_task(task: Task) -> None:
    assert Task.model_validate_json(task.model_dump_json()) == task


@pytest.mark.parametrize(
    ("task", "names", "width"),
    [
        (Task(name="b", kind="binary"), ("b",), 1),
        (Task(name="b", kind="binary", labels=("smoker",)), ("smoker",), 1),
        (Task(name="ml", kind="multilabel", labels=("x", "y", "z")), ("x", "y", "z"), 3),
        (Task(name="ml", kind="multilabel", n_outputs=2), ("ml_0", "ml_1"), 2),
        (Task(name="c", kind="multiclass", labels=("a", "b", "c", "d")), ("a", "b", "c", "d"), 4),
        (Task(name="r", kind="regression"), ("r",), 1),
        (Task(name="r", kind="regression", n_outputs=1), ("r",), 1),
        (Task(name="r", kind="regression", n_outputs=3), ("r_0", "r_1", "r_2"), 3),
        (Task(name="r", kind="regression", labels=("x", "y")), ("x", "y"), 2),
    ],
)
def test_output_names_and_width(task: Task, names: tuple[str, ...], width: int) -> None:
    assert task.output_names == names
    assert task.width == width


@pytest.mark.parametrize(
    "task",
    [Task(name="ml", kind="multilabel"), Task(name="c", kind="multiclass")],
)
def test_output_names_unknown_before_fit_raise(task: Task) -> None:
    with pytest.raises(TaskmaskError, match=f"task {task.name!r}.*fit first"):
        _ = task.output_names
    with pytest.raises(TaskmaskError, match="fit first"):
        _ = task.width


@pytest.mark.parametrize(
    ("task", "sentinel"),
    [
        (Task(name="b", kind="binary"), -1.0),
        (Task(name="ml", kind="multilabel"), -1.0),
        (Task(name="c", kind="multiclass"), -1.0),
        (Task(name="r", kind="regression"), None),
        (Task(name="b", kind="binary", sentinel=9), 9.0),
        (Task(name="r", kind="regression", sentinel=-999), -999.0),
    ],
)
def test_missing_sentinel_defaults_to_minus_one_for_classes_only(
    task: Task, sentinel: float | None
) -> None:
    assert task.missing_sentinel == sentinel


def test_is_classification() -> None:
    kinds = {"binary": True, "multilabel": True, "multiclass": True, "regression": False}
    for kind, expected in kinds.items():
        assert Task(name="t", kind=kind).is_classification is expected


def test_thresholds_repeat_a_scalar_and_check_a_tuple() -> None:
    assert Task(name="m", kind="multilabel", n_outputs=3, threshold=0.3).thresholds() == (0.3,) * 3
    assert Task(name="b", kind="binary").thresholds() == (0.5,)
    per_label = Task(name="m", kind="multilabel", labels=("x", "y"), threshold=(0.1, 0.9))
    assert per_label.thresholds() == (0.1, 0.9)
    wrong = Task(name="m", kind="multilabel", labels=("x", "y"), threshold=(0.1, 0.2, 0.3))
    with pytest.raises(TaskmaskError, match="'m': 3 thresholds for 2 labels"):
        wrong.thresholds()


def test_check_unique_names_accepts_distinct_names() -> None:
    tasks = [Task(name="a", kind="binary"), Task(name="b", kind="regression")]
    assert check_unique_names(tasks) is None
    assert check_unique_names(tuple(tasks)) is None


def test_check_unique_names_lists_every_repeated_name() -> None:
    tasks = [
        Task(name="b", kind="binary"),
        Task(name="a", kind="binary"),
        Task(name="b", kind="regression"),
        Task(name="a", kind="multilabel", n_outputs=2),
        Task(name="c", kind="binary"),
    ]
    with pytest.raises(TaskmaskError) as info:
        check_unique_names(tasks)
    assert "repeated: ['a', 'b']" in str(info.value)


def test_check_unique_names_rejects_no_tasks() -> None:
    with pytest.raises(TaskmaskError, match="at least one task"):
        check_unique_names([])
