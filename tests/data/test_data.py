"""In-memory data: batches cover every row once, rows stay aligned, bad inputs are named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmask.data import MultiTaskData, as_inputs, make_data, split
from taskmask.data._rows import SparseRows
from taskmask.errors import TaskmaskError
from taskmask.functional import EncodedLabels
from taskmask.tasks import Task

FAST = settings(max_examples=30, deadline=None)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _indexed(n: int) -> MultiTaskData:
    """Row i has input (i, -i) and, in both tasks, a target that encodes i."""
    rows = torch.arange(n, dtype=torch.float32)
    inputs = torch.stack([rows, -rows], dim=1)  # (n, 2)
    binary = EncodedLabels((rows % 2)[:, None], (rows % 3 != 0)[:, None])  # (n, 1)
    multiclass = EncodedLabels(torch.arange(n), torch.ones(n, dtype=torch.bool))  # (n,)
    return MultiTaskData(inputs, {"b": binary, "m": multiclass})


def _check_aligned(batch: MultiTaskData) -> None:
    rows = batch.inputs[:, 0]
    assert torch.equal(batch.inputs[:, 1], -rows)
    assert torch.equal(batch.labels["b"].target[:, 0], rows % 2)
    assert torch.equal(batch.labels["b"].observed[:, 0], rows % 3 != 0)
    assert torch.equal(batch.labels["m"].target, rows.long())


@FAST
@given(
    n=st.integers(min_value=1, max_value=40),
    batch_size=st.integers(min_value=1, max_value=50),
    seed=st.one_of(st.none(), seeds),
)
def test_batches_cover_every_row_exactly_once(n: int, batch_size: int, seed: int | None) -> None:
    data = _indexed(n)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    batches = list(data.batches(batch_size, generator=generator))
    sizes = [len(b) for b in batches]
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    for batch in batches:
        _check_aligned(batch)
    seen = torch.cat([b.inputs[:, 0] for b in batches]).long()
    assert sorted(seen.tolist()) == list(range(n))
    if seed is None:
        assert seen.tolist() == list(range(n))  # unshuffled: in order


@FAST
@given(seed=seeds)
def test_same_generator_seed_gives_same_order(seed: int) -> None:
    data = _indexed(30)

    def order(s: int) -> list[int]:
        batches = data.batches(7, generator=torch.Generator().manual_seed(s))
        return torch.cat([b.inputs[:, 0] for b in batches]).long().tolist()

    assert order(seed) == order(seed)
    assert order(seed) != order(seed + 1)  # 30! orders: a collision is not a real risk


def test_batches_reject_batch_size_below_one() -> None:
    with pytest.raises(TaskmaskError, match="batch_size must be >= 1, got 0"):
        next(_indexed(3).batches(0))


def test_take_slice_and_index_keep_rows_aligned() -> None:
    data = _indexed(10)
    sliced = data.take(slice(2, 5))
    assert sliced.inputs[:, 0].tolist() == [2.0, 3.0, 4.0]
    _check_aligned(sliced)
    picked = data.take(torch.tensor([9, 0, 4]))
    assert picked.inputs[:, 0].tolist() == [9.0, 0.0, 4.0]
    _check_aligned(picked)
    assert len(picked) == 3
    assert picked.input_shape == (2,)


def test_n_observed_counts_observed_entries_per_task() -> None:
    data = _indexed(9)  # b observed where i % 3 != 0: 6 rows; m everywhere
    assert data.n_observed() == {"b": 6, "m": 9}


@pytest.mark.parametrize("bad", ["target", "observed"])
def test_row_count_mismatch_raises_naming_the_task(bad: str) -> None:
    target, observed = torch.zeros(4, 1), torch.ones(4, 1, dtype=torch.bool)
    labels = {"target": target[:3] if bad == "target" else target}
    labels["observed"] = observed[:3] if bad == "observed" else observed
    with pytest.raises(TaskmaskError, match=r"task 'tox'.*for 4 input rows"):
        MultiTaskData(torch.zeros(4, 2), {"tox": EncodedLabels(**labels)})


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_as_inputs_names_the_dataframe_column_and_row_of_a_non_finite_value(value: float) -> None:
    frame = pd.DataFrame({"age": [1.0, 2.0, 3.0], "dose": [0.5, 0.25, 0.125]})
    frame.loc[2, "dose"] = value
    with pytest.raises(TaskmaskError, match=r"train.csv: feature dose is NaN or infinite at row 2"):
        as_inputs(frame, source="train.csv")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_as_inputs_names_the_index_of_a_non_finite_value_in_an_array(value: float) -> None:
    array = np.zeros((4, 3))
    array[1, 2] = value
    with pytest.raises(TaskmaskError, match="feature index 2 is NaN or infinite at row 1"):
        as_inputs(array)
    with pytest.raises(TaskmaskError, match="feature index 2 is NaN or infinite at row 1"):
        as_inputs(torch.from_numpy(array))


def test_as_inputs_uses_given_feature_names_for_arrays() -> None:
    array = np.zeros((2, 2))
    array[0, 1] = np.nan
    with pytest.raises(TaskmaskError, match="feature dose is NaN"):
        as_inputs(array, names=["age", "dose"])


def test_as_inputs_rejects_text_naming_the_column() -> None:
    frame = pd.DataFrame({"age": [1.0, 2.0], "site": ["a", "b"]})
    with pytest.raises(TaskmaskError, match="feature column 'site' is not numeric"):
        as_inputs(frame)
    with pytest.raises(TaskmaskError, match="features must be numeric"):
        as_inputs(np.array([["1", "x"], ["2", "y"]]))


def test_as_inputs_rejects_1d_and_empty_inputs() -> None:
    with pytest.raises(TaskmaskError, match=r"must be \(N, n_features\), got \(3,\)"):
        as_inputs(np.zeros(3))
    with pytest.raises(TaskmaskError, match="no rows"):
        as_inputs(np.zeros((0, 3)))


def test_as_inputs_returns_float32_with_the_values() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, -1.5], "c": [True, False]})
    tensor = as_inputs(frame)
    assert tensor.dtype == torch.float32
    assert torch.equal(tensor, torch.tensor([[1.0, 0.5, 1.0], [2.0, -1.5, 0.0]]))


@pytest.mark.parametrize("kind", ["array", "frame"])
def test_as_inputs_never_aliases_a_read_only_buffer(kind: str) -> None:
    array = np.arange(3, dtype=np.float32).reshape(3, 1)
    array.flags.writeable = False
    source = array if kind == "array" else pd.DataFrame({"a": array[:, 0].copy()})
    before = np.array(source, copy=True)
    tensor = as_inputs(source)
    tensor.add_(1.0)
    assert np.array_equal(np.asarray(source), before)


def test_make_data_encodes_labels_and_leaves_out_absent_tasks() -> None:
    tasks = [Task(name="b", kind="binary"), Task(name="r", kind="regression")]
    data = make_data(np.ones((3, 2)), {"b": [1, -1, 0]}, tasks)
    assert set(data.labels) == {"b"}
    assert data.labels["b"].observed[:, 0].tolist() == [True, False, True]
    assert data.labels["b"].target[:, 0].tolist() == [1.0, 0.0, 0.0]


def test_make_data_rejects_labels_for_unknown_tasks() -> None:
    tasks = [Task(name="b", kind="binary")]
    with pytest.raises(TaskmaskError, match=r"train: labels for unknown tasks \['zz'\]"):
        make_data(np.ones((2, 1)), {"b": [0, 1], "zz": [1, 1]}, tasks, source="train")


def test_make_data_rejects_label_rows_not_matching_inputs() -> None:
    tasks = [Task(name="b", kind="binary")]
    with pytest.raises(TaskmaskError, match="task 'b': 2 label rows for 3 input rows"):
        make_data(np.ones((3, 1)), {"b": [0, 1]}, tasks)


@FAST
@given(
    n=st.integers(min_value=2, max_value=60),
    fraction=st.floats(min_value=0.01, max_value=0.99),
    seed=seeds,
)
def test_split_sizes_are_right_and_parts_disjoint(n: int, fraction: float, seed: int) -> None:
    data = _indexed(n)
    train, held = split(data, fraction, generator=torch.Generator().manual_seed(seed))
    assert len(held) == max(1, round(n * fraction))
    assert len(train) + len(held) == n
    rows = train.inputs[:, 0].long().tolist() + held.inputs[:, 0].long().tolist()
    assert sorted(rows) == list(range(n))
    _check_aligned(train)
    _check_aligned(held)


def test_split_is_repeatable_with_the_same_seed() -> None:
    data = _indexed(20)
    first = split(data, 0.25, generator=torch.Generator().manual_seed(3))[1]
    again = split(data, 0.25, generator=torch.Generator().manual_seed(3))[1]
    assert torch.equal(first.inputs, again.inputs)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_fractions_outside_zero_one(fraction: float) -> None:
    with pytest.raises(TaskmaskError, match="validation fraction must be in"):
        split(_indexed(4), fraction, generator=torch.Generator())


def test_sparse_inputs_split_stay_sparse_and_batches_densify_their_rows() -> None:
    x = np.zeros((20, 3), np.float32)
    x[::2, 1] = np.arange(10)
    labels = {"y": np.where(np.arange(20) % 3 == 0, np.nan, np.arange(20) % 2)}
    data = make_data(sp.csr_matrix(x), labels, [Task(name="y", kind="binary")])
    assert isinstance(data.inputs, SparseRows)
    kept, held = split(data, 0.25, generator=torch.Generator().manual_seed(0))
    assert isinstance(kept.inputs, SparseRows) and (len(kept), len(held)) == (15, 5)
    dense = make_data(x, labels, [Task(name="y", kind="binary")])
    d_kept, _ = split(dense, 0.25, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(kept.inputs[torch.arange(15)], d_kept.inputs, rtol=0, atol=0)
    torch.testing.assert_close(kept.labels["y"].target, d_kept.labels["y"].target)
    mean, scale = kept.inputs.moments().standardization()
    torch.testing.assert_close(mean, d_kept.inputs.mean(0, keepdim=True))
    torch.testing.assert_close(scale[0, 1], d_kept.inputs[:, 1].std(correction=0))


def test_sparse_inputs_with_nan_name_the_entry() -> None:
    x = sp.csr_matrix(np.array([[0.0, 1.0], [np.nan, 0.0]], np.float32))
    with pytest.raises(TaskmaskError, match=r"train: feature index 0 is NaN .* row 1"):
        make_data(x, {}, [], source="train")
