"""The label boundary: every missing marker reads as missing, bad labels raise naming the task."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmask.errors import TaskmaskError
from taskmask.functional import EncodedLabels
from taskmask.tasks import Task, class_names_from, encode_labels, missing_cells, resolve_task

FAST = settings(max_examples=40, deadline=None)
MISSING = (None, math.nan, np.nan, "", "  ", "\t", -1, -1.0, "-1")
MISSING_IDS = ["None", "nan", "np.nan", "empty", "blank", "tab", "-1", "-1.0", "'-1'"]
BLANKS = (None, math.nan, "", "  ")

BINARY = Task(name="smoker", kind="binary")
MULTILABEL = Task(name="tags", kind="multilabel", labels=("x", "y", "z"))
MULTICLASS = Task(name="species", kind="multiclass", labels=("cat", "dog", "eel"))
REGRESSION = Task(name="pos", kind="regression", n_outputs=2)

missing_markers = st.sampled_from(MISSING)


def assert_encoded(
    encoded: EncodedLabels, target: list[Any], observed: list[Any], dtype: torch.dtype
) -> None:
    assert encoded.observed.dtype == torch.bool
    assert encoded.target.dtype == dtype
    assert encoded.target.shape == encoded.observed.shape
    assert torch.equal(encoded.observed, torch.tensor(observed, dtype=torch.bool))
    assert torch.equal(encoded.target, torch.tensor(target, dtype=dtype))


@pytest.mark.parametrize("marker", MISSING, ids=MISSING_IDS)
def test_missing_markers_read_as_missing_for_binary(marker: Any) -> None:
    encoded = encode_labels(BINARY, [1, marker, 0])
    assert_encoded(encoded, [[1.0], [0.0], [0.0]], [[True], [False], [True]], torch.float32)


@pytest.mark.parametrize("marker", MISSING, ids=MISSING_IDS)
def test_missing_markers_read_as_missing_for_multilabel(marker: Any) -> None:
    encoded = encode_labels(MULTILABEL, [[1, marker, 0], [marker, 1, marker]])
    assert_encoded(
        encoded,
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        [[True, False, True], [False, True, False]],
        torch.float32,
    )


@pytest.mark.parametrize("marker", MISSING, ids=MISSING_IDS)
def test_missing_markers_read_as_missing_for_multiclass(marker: Any) -> None:
    encoded = encode_labels(MULTICLASS, ["eel", marker, "dog"])
    assert_encoded(encoded, [2, 0, 1], [True, False, True], torch.int64)


@pytest.mark.parametrize("marker", BLANKS, ids=["None", "nan", "empty", "blank"])
def test_missing_markers_read_as_missing_for_regression(marker: Any) -> None:
    encoded = encode_labels(REGRESSION, [[0.5, marker], [marker, -2.0]])
    assert_encoded(
        encoded, [[0.5, 0.0], [0.0, -2.0]], [[True, False], [False, True]], torch.float32
    )


def test_regression_has_no_sentinel_by_default() -> None:
    encoded = encode_labels(Task(name="r", kind="regression"), [-1.0, 3.0])
    assert_encoded(encoded, [[-1.0], [3.0]], [[True], [True]], torch.float32)


def test_regression_sentinel_when_given() -> None:
    task = Task(name="r", kind="regression", sentinel=-999)
    encoded = encode_labels(task, [-999.0, -1.0, math.nan])
    assert_encoded(encoded, [[0.0], [-1.0], [0.0]], [[False], [True], [False]], torch.float32)


def test_custom_class_sentinel_replaces_minus_one() -> None:
    task = Task(name="b", kind="binary", sentinel=9)
    encoded = encode_labels(task, [9, 1, 0])
    assert_encoded(encoded, [[0.0], [1.0], [0.0]], [[False], [True], [True]], torch.float32)
    with pytest.raises(TaskmaskError, match=r"task 'b'.*value -1"):
        encode_labels(task, [-1, 1])


def _is_missing(value: Any) -> bool:
    """The reference reading: None, NaN, blank text or the default sentinel -1."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    if isinstance(value, str):
        return not value.strip() or value == "-1"
    return float(value) == -1.0


def _number(value: Any) -> float:
    return 0.0 if _is_missing(value) else float(value)


def _class_code(value: Any) -> int:
    codes = {"cat": 0, "dog": 1, "eel": 2}
    if _is_missing(value):
        return 0
    return codes[value] if value in codes else int(float(value))


@FAST
@given(
    rows=st.lists(
        st.lists(st.sampled_from([0, 1, 0.0, 1.0, "0", "1", *MISSING]), min_size=3, max_size=3),
        min_size=1,
        max_size=12,
    )
)
def test_multilabel_encoding_property(rows: list[list[Any]]) -> None:
    encoded = encode_labels(MULTILABEL, np.array(rows, dtype=object))
    present = [[not _is_missing(v) for v in row] for row in rows]
    values = [[_number(v) for v in row] for row in rows]
    assert_encoded(encoded, values, present, torch.float32)
    assert torch.isfinite(encoded.target).all()


@FAST
@given(
    labels=st.lists(
        st.sampled_from(["cat", "dog", "eel", 0, 1, 2, 1.0, 2.0, "1", *MISSING]),
        min_size=1,
        max_size=12,
    ),
    as_column=st.booleans(),
)
def test_multiclass_accepts_names_and_indices(labels: list[Any], as_column: bool) -> None:
    raw: Any = np.array(labels, dtype=object)
    if as_column:
        raw = raw.reshape(-1, 1)
    encoded = encode_labels(MULTICLASS, raw)
    present = [not _is_missing(v) for v in labels]
    target = [_class_code(v) for v in labels]
    assert encoded.target.shape == (len(labels),)
    assert_encoded(encoded, target, present, torch.int64)


@FAST
@given(
    rows=st.lists(
        st.lists(
            st.floats(allow_nan=False, allow_infinity=False, width=32) | st.sampled_from(BLANKS),
            min_size=2,
            max_size=2,
        ),
        min_size=1,
        max_size=12,
    )
)
def test_regression_missing_per_output(rows: list[list[Any]]) -> None:
    encoded = encode_labels(REGRESSION, np.array(rows, dtype=object))
    present = [[v not in BLANKS and v == v for v in row] for row in rows]
    values = [[v if v not in BLANKS and v == v else 0.0 for v in row] for row in rows]
    assert_encoded(encoded, values, present, torch.float32)
    assert not torch.isnan(encoded.target).any()


@pytest.mark.parametrize(
    "raw",
    [
        [1, None, 0, 1],
        np.array([1.0, np.nan, 0.0, 1.0]),
        torch.tensor([1.0, math.nan, 0.0, 1.0]),
        pd.Series([1, None, 0, 1], index=[9, 3, 7, 1]),
        pd.DataFrame({"smoker": [1, None, 0, 1]}),
        np.array([[1.0], [np.nan], [0.0], [1.0]]),
        ["1", "", "0", "1"],
    ],
    ids=["list", "numpy", "torch", "series", "frame", "column", "text"],
)
def test_binary_input_containers_give_the_same_n_by_1_result(raw: Any) -> None:
    encoded = encode_labels(BINARY, raw)
    assert_encoded(
        encoded, [[1.0], [0.0], [0.0], [1.0]], [[True], [False], [True], [True]], torch.float32
    )


@pytest.mark.parametrize(
    "raw",
    [
        ["dog", None, "cat"],
        np.array([1, -1, 0]),
        torch.tensor([1.0, math.nan, 0.0]),
        pd.Series(["dog", "", "cat"], index=[5, 2, 0]),
        np.array([["dog"], [None], ["cat"]], dtype=object),
    ],
    ids=["list", "numpy", "torch", "series", "column"],
)
def test_multiclass_input_containers_give_the_same_n_result(raw: Any) -> None:
    assert_encoded(encode_labels(MULTICLASS, raw), [1, 0, 0], [True, False, True], torch.int64)


@pytest.mark.parametrize(
    ("task", "raw", "observed"),
    [
        (BINARY, [1, math.nan, ""], [[True], [False], [False]]),
        (REGRESSION, [[0.5, math.nan], ["", 2.0]], [[True, False], [False, True]]),
    ],
    ids=["binary", "regression"],
)
def test_plain_list_mixing_nan_and_empty_text(task: Task, raw: Any, observed: Any) -> None:
    encoded = encode_labels(task, raw)
    assert torch.equal(encoded.observed, torch.tensor(observed))


def test_single_output_regression_is_n_by_1() -> None:
    encoded = encode_labels(Task(name="r", kind="regression"), np.array([1.5, np.nan]))
    assert_encoded(encoded, [[1.5], [0.0]], [[True], [False]], torch.float32)


@pytest.mark.parametrize(
    ("task", "raw", "message"),
    [
        (BINARY, [0, 2, 1], "label smoker has value 2 at row 1"),
        (BINARY, [0.5], "value 0.5 at row 0"),
        (BINARY, [-2], "value -2 at row 0"),
        (BINARY, [0, "yes"], "got 'yes' at row 1"),
        (MULTILABEL, [[0, 1, 3]], "label z has value 3 at row 0"),
        (MULTILABEL, [[0, 1]], "expected 3 label columns, got 2"),
        (MULTICLASS, [0, 3], "class 3 at row 1 is not one of"),
        (MULTICLASS, ["cat", 1.5], "class 1.5 at row 1"),
        (MULTICLASS, [-2], "class -2 at row 0"),
        (MULTICLASS, np.array([["cat", "dog"]]), "one class label per row"),
        (REGRESSION, [[1.0, math.inf]], "found inf"),
        (REGRESSION, [[-math.inf, 1.0]], "found inf"),
        (REGRESSION, [[1.0, "x"]], "got 'x' at row 0"),
        (BINARY, [], "no rows"),
    ],
)
def test_bad_labels_raise_naming_the_task(task: Task, raw: Any, message: str) -> None:
    with pytest.raises(TaskmaskError) as info:
        encode_labels(task, raw, source="train.csv")
    text = str(info.value)
    assert f"train.csv, task {task.name!r}" in text
    assert message in text


def test_unknown_class_name_raises_naming_the_task() -> None:
    with pytest.raises(TaskmaskError, match=r"task 'species'.*class 'cow' at row 1 is not one of"):
        encode_labels(MULTICLASS, ["cat", "cow"])


def test_regression_value_beyond_float32_is_rejected_or_finite() -> None:
    try:
        encoded = encode_labels(REGRESSION, [[1e39, 0.0]])
    except TaskmaskError as error:
        assert "task 'pos'" in str(error)
    else:
        assert torch.isfinite(encoded.target).all()


def test_multiclass_without_class_names_raises() -> None:
    with pytest.raises(TaskmaskError, match=r"task 'c'.*resolve the task first"):
        encode_labels(Task(name="c", kind="multiclass"), ["a", "b"])


@pytest.mark.parametrize(
    ("raw", "classes"),
    [
        (["dog", "cat", None, "", "  ", "eel", "cat"], ("cat", "dog", "eel")),
        ([0, 2, -1, None, 2], ("0", "1", "2")),
        (np.array([1.0, np.nan, 0.0]), ("0", "1")),
        (["1", "0", "-1"], ("0", "1")),
    ],
)
def test_resolve_task_infers_class_names_ignoring_missing(
    raw: Any, classes: tuple[str, ...]
) -> None:
    task = Task(name="c", kind="multiclass")
    resolved = resolve_task(task, raw)
    assert resolved.labels == classes
    assert resolved.name == "c"
    assert task.labels is None  # the spec itself is unchanged


def test_resolve_then_encode_round_trips_class_names() -> None:
    raw = ["dog", None, "cat", "eel", ""]
    task = resolve_task(Task(name="c", kind="multiclass"), raw)
    assert_encoded(
        encode_labels(task, raw), [1, 0, 0, 2, 0], [True, False, True, True, False], torch.int64
    )


def test_numeric_classes_honour_n_outputs() -> None:
    assert class_names_from(Task(name="c", kind="multiclass", n_outputs=4), [0, 1]) == (
        "0",
        "1",
        "2",
        "3",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (["a", None, ""], "at least 2 classes"),
        ([-1, None], "at least 2 classes"),
        ([0, -2, 1], "indices 0..k-1"),
        ([0, 1.5], "indices 0..k-1"),
    ],
)
def test_resolve_task_rejects_unusable_classes(raw: Any, message: str) -> None:
    with pytest.raises(TaskmaskError, match=f"task 'c'.*{message}"):
        resolve_task(Task(name="c", kind="multiclass"), raw)


@pytest.mark.parametrize(
    ("kind", "raw", "names"),
    [
        ("multilabel", np.zeros((3, 4)), ("t_0", "t_1", "t_2", "t_3")),
        ("regression", np.zeros((3, 2)), ("t_0", "t_1")),
        ("regression", np.zeros(3), ("t",)),
    ],
)
def test_resolve_task_infers_width(kind: str, raw: Any, names: tuple[str, ...]) -> None:
    resolved = resolve_task(Task(name="t", kind=kind), raw)
    assert resolved.output_names == names
    assert resolved.width == len(names)


@pytest.mark.parametrize("task", [BINARY, MULTILABEL, MULTICLASS, REGRESSION])
def test_resolve_task_leaves_a_resolved_task_unchanged(task: Task) -> None:
    assert resolve_task(task, np.zeros((2, 5))) == task


def test_missing_cells_doctest_and_shapes() -> None:
    import doctest

    from taskmask.tasks import _masking

    assert doctest.testmod(_masking).failed == 0
    grid = np.array([[1.0, np.nan], [-1.0, 0.0]])
    assert missing_cells(grid, -1).tolist() == [[False, True], [True, False]]
    assert missing_cells(torch.tensor([0.0, float("nan")])).tolist() == [False, True]
    cells = pd.DataFrame({"a": ["x", " "], "b": pd.array([1, None], dtype="Int8")})
    assert missing_cells(cells).tolist() == [[False, False], [True, True]]
    assert missing_cells(np.array(["", "-1", "a"]), None).tolist() == [True, False, False]


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_a_text_cell_that_is_no_number_names_its_row(kind: str) -> None:
    with pytest.raises(TaskmaskError, match=r"got 'oops' at row 2"):
        encode_labels(Task(name="t", kind=kind), np.array([1, "", "oops"], dtype=object))
