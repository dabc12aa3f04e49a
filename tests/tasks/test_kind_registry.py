"""The registry holds the built-in kinds like a user's: a built-in cannot be unregistered and
is replaced only on request; a user's kind gets statistics (streamed and in memory alike),
coverage, threshold tuning, initial biases and prediction columns from its spec's hooks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import taskmask
from taskmask import LossTerm, Task, TaskKindSpec, TaskmaskError
from taskmask.data import ParquetSource, label_coverage, make_data
from taskmask.data import _stream_stats as stream_stats
from taskmask.functional import binary_metrics, masked_binary_cross_entropy_with_logits
from taskmask.model import MLPConfig, build_trunk
from taskmask.tasks import get_kind, known_kinds
from taskmask.tasks.kinds import BINARY


def bce(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    total = masked_binary_cross_entropy_with_logits(input, target, observed, reduction="sum")
    return LossTerm(total, observed.sum().to(total.dtype))


def flag_metrics(probs: np.ndarray, target: np.ndarray, observed: np.ndarray) -> dict:
    k = probs.shape[1]
    return binary_metrics(probs, target, observed, labels=list("abc")[:k], thresholds=[0.5] * k)


FLAGS = TaskKindSpec(
    loss=bce,
    metrics=flag_metrics,
    summary="f1",
    targets="flags",
    scores=lambda task, output: torch.sigmoid(output),
    tunes_thresholds=True,
    initial_bias=lambda task, counts, sums: torch.logit((sums / counts.clamp(min=1)).float()),
)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    taskmask.register_kind("flags", FLAGS)
    yield
    if "flags" in known_kinds():
        taskmask.unregister_kind("flags")


def test_a_built_in_kind_is_replaced_only_on_request_and_never_unregistered() -> None:
    with pytest.raises(TaskmaskError, match="'binary' is a built-in kind; pass replace=True"):
        taskmask.register_kind("binary", FLAGS)
    with pytest.raises(TaskmaskError, match="'count' is a built-in kind and cannot be unreg"):
        taskmask.unregister_kind("count")
    taskmask.register_kind("binary", FLAGS, replace=True)
    try:
        assert Task(name="t", kind="binary").spec is FLAGS
        assert Task(name="t", kind="binary", n_outputs=2).width == 2  # FLAGS' width
    finally:
        taskmask.register_kind("binary", BINARY, replace=True)
    assert get_kind("binary") is BINARY and "binary" in known_kinds()


def test_options_belong_to_the_kinds_that_read_them() -> None:
    with pytest.raises(ValueError, match="pos_weight applies to binary and multilabel tasks"):
        Task(name="t", kind="flags", pos_weight=2.0)
    with pytest.raises(ValueError, match="applies to multilabel tasks only, not count"):
        Task(name="t", kind="count", missing_labels="negative")


def _flags(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, :2] + 0.3 * rng.normal(size=(n, 2)) > 0.4).astype(float)
    y[rng.random(y.shape) < 0.3] = np.nan
    return x, y


def test_a_user_kind_has_label_sums_coverage_and_an_initial_bias() -> None:
    task = Task(name="f", kind="flags", n_outputs=2)
    x, y = _flags(50, 0)
    data = make_data(x, {"f": y}, [task])
    stats = stream_stats.label_stats([task], data.labels, len(data))
    seen = ~np.isnan(y)
    assert stats.counts["f"].tolist() == seen.sum(0).tolist()
    assert stats.sums["f"].tolist() == np.nansum(y, axis=0).tolist()
    rows = label_coverage(data, [task]).labels
    assert rows["n_positive"].tolist() == np.nansum(y, axis=0).astype(int).tolist()
    bias = stream_stats.initial_biases([task], stats)["f"]
    torch.testing.assert_close(bias, torch.logit(torch.tensor(np.nanmean(y, axis=0)).float()))


def test_a_user_kind_streams_the_same_statistics_as_in_memory(tmp_path: Path) -> None:
    x, y = _flags(60, 1)
    frame = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "a": y[:, 0], "b": y[:, 1]})
    frame.to_parquet(tmp_path / "part.parquet", row_group_size=16)
    task = Task(name="f", kind="flags", labels=("a", "b"))
    source = ParquetSource(tmp_path, features=["x0", "x1"], tasks=[task], targets={"f": ["a", "b"]})
    data = make_data(x[:, :2], {"f": y}, [task])
    pd.testing.assert_frame_equal(source.coverage().labels, label_coverage(data, [task]).labels)
    expected = stream_stats.initial_biases(
        [task], stream_stats.label_stats([task], data.labels, 60)
    )
    torch.testing.assert_close(source.initial_biases()["f"], expected["f"])


def test_a_user_kind_tunes_thresholds_and_decides_with_them() -> None:
    task = Task(name="f", kind="flags", n_outputs=2)
    x, y = _flags(80, 2)
    torch.manual_seed(0)
    model = taskmask.MultiTaskModel(build_trunk(MLPConfig(hidden=(8,)), (4,)), [task], (4,))
    data = make_data(x, {"f": y}, [task])
    tuned = taskmask.tune_thresholds(model, data).task("f")
    assert isinstance(tuned.threshold, tuple) and len(tuned.threshold) == 2
    assert tuned.threshold != (0.5, 0.5)
    predictions = taskmask.predict(model, x)["f"]
    assert predictions.decisions is not None
    np.testing.assert_array_equal(
        predictions.decisions, predictions.scores >= np.asarray(tuned.threshold)
    )
    frame = taskmask.predictions_frame({"f": predictions})
    assert list(frame.columns) == ["f.output.f_0", "f.output.f_1", "f.pred.f_0", "f.pred.f_1"]


def test_a_user_kinds_initial_bias_starts_its_head() -> None:
    x, y = _flags(40, 3)
    task = Task(name="f", kind="flags", n_outputs=2)
    result = taskmask.fit(x, {"f": y}, [task], epochs=1, lr=1e-9, progress=False)
    bias = result.model.heads["f"].bias.detach()
    torch.testing.assert_close(bias, torch.logit(torch.tensor(np.nanmean(y, axis=0))).float())
