"""The scikit-learn adapter reads "missing" exactly as masking does: for every built-in kind,
NaN, -1 (a class label's sentinel, a number for regression and counts), None, ``pd.NA`` and
empty or blank cells are missing in ``Y`` where, and only where, `encode_labels` says so."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from taskmask.sklearn._targets import observed_labels, task_columns, taskmask_labels
from taskmask.tasks import CLASS_SENTINEL, Task, encode_labels, get_kind, missing_cells

NAN = float("nan")
HOLES = [NAN, -1, None, "", " ", pd.NA, -1.0, "-1"]
"""Cells that may mean missing; the text "-1" only in class columns (``Y`` of numbers is
numbers for the adapter)."""


def _column(values: list[Any], *, text: bool = True) -> pd.Series:
    return pd.Series([*values, *HOLES[: None if text else -1]], dtype=object)


CASES = {
    "binary": ({}, {"t": _column([1, 0, 1])}),
    "multilabel": ({}, {"a": _column([1, 0, 0]), "b": _column([0, 1, 1])}),
    "multiclass": ({}, {"t": _column(["red", "blue", "red"])}),
    "regression": ({}, {"t": _column([1.5, -2.0, 3.0], text=False)}),
    "regression_sentinel": ({"sentinel": -1.0}, {"t": _column([1.5, -2.0, 3.0], text=False)}),
    "count": ({"sentinel": -1.0}, {"t": _column([0, 3, 7], text=False)}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_adapter_and_masking_agree_on_missing_cells(case: str) -> None:
    options, columns = CASES[case]
    kind = case.removesuffix("_sentinel")
    frame = pd.DataFrame(columns)
    names = list(columns)
    spec = {"name": "t", "kind": kind, **options}
    spec |= {"columns": names} if len(names) > 1 else {"column": names[0]}
    (entry,) = task_columns(frame, [spec], classify=True, sentinel=None)
    codes = taskmask_labels(entry, frame).reshape(len(frame), -1)
    raw = frame[names].to_numpy(dtype=object)
    encoded = encode_labels(entry.task, raw if len(names) > 1 else raw[:, 0])
    observed = encoded.observed.numpy().reshape(len(frame), -1)
    np.testing.assert_array_equal(np.isnan(codes), ~observed)
    np.testing.assert_array_equal(missing_cells(raw, entry.task.missing_sentinel), ~observed)
    minus_one = entry.task.missing_sentinel == -1
    holes = [True, minus_one, True, True, True, True, minus_one, minus_one]
    expected = [False] * 3 + holes[: len(frame) - 3]
    assert (~observed[:, 0]).tolist() == expected


@pytest.mark.parametrize("kind", ["binary", "multilabel", "multiclass"])
def test_class_labels_default_to_the_one_sentinel(kind: str) -> None:
    assert get_kind(kind).sentinel == CLASS_SENTINEL == -1.0
    labels = ("a", "b") if kind != "binary" else None
    assert Task(name="t", kind=kind, labels=labels).missing_sentinel == CLASS_SENTINEL


def test_numeric_and_text_columns_give_one_mask() -> None:
    numbers = pd.Series([1.0, NAN, -1.0, 0.0])
    text = pd.Series(["1", "", "-1", "0"])
    for column in (numbers, text, numbers.astype("Float64"), numbers.astype(object)):
        missing, _ = observed_labels(column, -1.0)
        assert missing.tolist() == [False, True, True, False]
    assert observed_labels(numbers, None)[0].tolist() == [False, True, False, False]


def test_infinity_stays_an_error() -> None:
    with pytest.raises(ValueError, match="infinity"):
        observed_labels(pd.Series([1.0, float("inf")], name="y"), None)
