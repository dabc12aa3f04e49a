"""benchmarks/single_positive.py: its smoke run trains every strategy and writes its outputs;
one positive label kept per image; LL-R's rejection rate follows the epochs; without
../shared/data it skips with a message and exits 0."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from benchmark_scripts import BENCHMARKS, DATA, assert_skip_without_data, smoke_runs

from taskmask import Task
from taskmask.functional import large_loss_rejection_bce_with_logits, single_positive_loss_term

SCRIPT = "single_positive"
STRATEGIES = (
    "all_labels",
    "ignore",
    "negative",
    "weak_negative",
    "expected_positive",
    "an_ls",
    "em",
    "ll_r",
    "asl",
)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import single_positive
    finally:
        sys.path.remove(str(BENCHMARKS))
    return single_positive


def test_smoke_run_trains_every_strategy(tmp_path: Path) -> None:
    if not (DATA / "miml_scene" / "miml_images.tar").is_file():
        pytest.skip(f"{DATA / 'miml_scene'} is absent")
    out_dir, stdout = smoke_runs((SCRIPT,), tmp_path)[SCRIPT]
    for name in ("results.json", "results.md"):
        assert (out_dir / name).stat().st_size > 0, name
    report = json.loads((out_dir / "results.json").read_text())
    assert report["threads"] == 1 and "total" in stdout
    assert list(report["summary"]) == list(STRATEGIES)
    assert [r["strategy"] for r in report["runs"]] == list(STRATEGIES)  # one smoke seed
    for run in report["runs"]:
        scores = run["scores"]
        for key in ("pr_auc_macro", "roc_auc_macro", "f1_macro"):
            assert 0.0 <= scores[key] <= 1.0, (run["strategy"], key)
        assert 0.0 <= scores["positives_per_image"] <= 5.0
    table = (out_dir / "results.md").read_text()
    assert all(f"| {name} |" in table for name in STRATEGIES)


def test_single_positive_labels_keep_one_true_positive_per_row(bench: ModuleType) -> None:
    rng = np.random.default_rng(0)
    Y = (rng.random((500, 5)) < 0.35).astype(float)
    Y[:3] = 0.0  # rows without a positive
    kept = bench.single_positive_labels(Y, np.random.default_rng(1))
    observed = ~np.isnan(kept)
    has_positive = Y.sum(axis=1) > 0
    assert (observed.sum(axis=1) == has_positive).all()
    assert (kept[observed] == 1.0).all() and (Y[observed] == 1.0).all()
    assert np.array_equal(
        kept, bench.single_positive_labels(Y, np.random.default_rng(1)), equal_nan=True
    )
    both = (Y[:, 0] == 1) & (Y[:, 1] == 1) & (Y[:, 2:].sum(axis=1) == 0)
    assert 0 < observed[both, 0].sum() < both.sum()  # a random positive, not the first one


def test_rejection_loss_rate_follows_the_epochs_of_training_rows(bench: ModuleType) -> None:
    task = Task(name="scene", kind="multilabel")
    gen = torch.Generator().manual_seed(0)
    input = torch.randn(8, 5, generator=gen)
    target = torch.zeros(8, 5)
    observed = torch.zeros(8, 5, dtype=torch.bool)
    observed[:, 0] = True
    loss_fn = bench.rejection_loss(n_train=8, delta_rel=0.25)

    def count(rows: slice, rate: float) -> int:
        n = len(range(8)[rows])
        return n * 5 - math.ceil(rate * n * 4)  # every row covered, 4 assumed negatives each

    leaf = input.clone().requires_grad_(True)
    for epochs_done in range(6):
        rate = min(1.0, 0.25 * epochs_done)
        with torch.no_grad():  # an evaluation: it reads the rate and does not advance it
            assert loss_fn(task, input, target, observed).count.item() == count(slice(0, 8), rate)
        for rows in (slice(0, 5), slice(5, 8)):  # two training batches an epoch
            term = loss_fn(task, leaf[rows], target[rows], observed[rows])
            assert term.count.item() == count(rows, rate)
    assert (
        single_positive_loss_term(
            large_loss_rejection_bce_with_logits, input, target, observed, rejection_rate=1.0
        ).count.item()
        == 8
    )  # all rejected: the observed labels alone


def test_without_data_the_benchmark_skips_with_a_message(tmp_path: Path) -> None:
    assert_skip_without_data((SCRIPT,), tmp_path)
