"""Statistics merged chunk by chunk equal those of all rows at once: label counts, balanced
positive weights, regression means and the coverage report against their in-memory
counterparts; feature moments against `taskmask.api.standardization`."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from training_script import TASKS, problem

from taskmask.api import standardization
from taskmask.data import _stream_stats as stream_stats
from taskmask.data import label_coverage
from taskmask.data._coverage import coverage
from taskmask.functional import EncodedLabels, balanced_pos_weight


def _chunked(cuts: list[int], n: int) -> list[slice]:
    bounds = [0, *sorted({c % n for c in cuts if c % n > 0}), n]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(1, 10_000), max_size=6), seed=st.integers(0, 1000))
def test_label_stats_of_chunks_add_up_to_those_of_all_rows(cuts: list[int], seed: int) -> None:
    data = problem(97, seed=seed)
    whole = stream_stats.label_stats(TASKS, data.labels, len(data))
    total = stream_stats.label_stats(TASKS, {}, 0)
    for part in _chunked(cuts, len(data)):
        chunk = data.take(part)
        total = total + stream_stats.label_stats(TASKS, chunk.labels, len(chunk))
    assert total.n_rows == whole.n_rows == 97
    assert total.n_observed() == whole.n_observed() == data.n_observed()
    assert torch.equal(total.co_observed, whole.co_observed)
    for name in whole.counts:
        assert torch.equal(total.counts[name], whole.counts[name])
        torch.testing.assert_close(total.sums[name], whole.sums[name], rtol=1e-12, atol=1e-9)


def test_derived_figures_equal_the_in_memory_ones() -> None:
    data = problem(150, seed=3)
    stats = stream_stats.label_stats(TASKS, data.labels, len(data))
    for task in TASKS:
        enc = data.labels[task.name]
        if task.kind in ("binary", "multilabel"):
            expected = balanced_pos_weight(enc.target, enc.observed).tolist()
            assert stream_stats.balanced_pos_weights(task, stats) == tuple(expected)
        if task.kind == "regression":
            mean = torch.where(enc.observed, enc.target, 0.0).sum(0) / enc.observed.sum(0)
            torch.testing.assert_close(stream_stats.initial_biases(TASKS, stats)[task.name], mean)
    chunked = stream_stats.label_stats(TASKS, {}, 0)
    for rows in (slice(0, 70), slice(70, 150)):
        part = {
            name: EncodedLabels(e.target[rows], e.observed[rows]) for name, e in data.labels.items()
        }
        chunked = chunked + stream_stats.label_stats(TASKS, part, 80 if rows.start else 70)
    streamed, in_memory = coverage(chunked, TASKS), label_coverage(data, TASKS)
    assert streamed.n_rows == in_memory.n_rows
    pd.testing.assert_frame_equal(streamed.labels, in_memory.labels)
    pd.testing.assert_frame_equal(streamed.co_observed, in_memory.co_observed)


def test_a_task_without_labels_counts_nothing() -> None:
    data = problem(20)
    labels = {k: v for k, v in data.labels.items() if k != "c"}
    stats = stream_stats.label_stats(TASKS, labels, len(data))
    assert stats.n_observed()["c"] == 0
    names = [t.name for t in TASKS]
    assert int(stats.co_observed[names.index("c")].sum()) == 0


@settings(max_examples=30, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 10_000), max_size=6),
    offset=st.floats(-1e4, 1e4),
    seed=st.integers(0, 1000),
)
def test_moments_of_chunks_give_the_in_memory_standardisation(
    cuts: list[int], offset: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    inputs = (offset + rng.normal(size=(61, 4)) * [1.0, 1e-3, 10.0, 0.0]).astype(np.float32)
    total: stream_stats.Moments | None = None
    for part in _chunked(cuts, len(inputs)):
        chunk = stream_stats.moments(inputs[part])
        total = chunk if total is None else total + chunk
    assert total is not None and total.n == 61
    mean, scale = total.standardization()
    expected_mean, expected_scale = standardization(torch.from_numpy(inputs))
    torch.testing.assert_close(mean, expected_mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(scale, expected_scale, rtol=1e-5, atol=1e-7)
    assert float(scale[0, 3]) == 1.0  # a constant feature is not scaled
