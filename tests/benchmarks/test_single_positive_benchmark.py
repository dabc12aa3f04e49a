"""benchmarks/single_positive.py: its smoke run trains every strategy and writes its outputs;
one positive label kept per image; every strategy is a Task config; without
../shared/data it skips with a message and exits 0."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from benchmark_scripts import BENCHMARKS, DATA, assert_skip_without_data, smoke_runs

from taskmask import Task

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


def test_every_strategy_is_a_task_config(bench: ModuleType) -> None:
    tasks = {
        s.name: Task(
            name="scene",
            kind="multilabel",
            missing_labels=s.missing_labels,
            missing_label_options=s.options or None,
            **({"expected_positives": 1.2} if s.name == "expected_positive" else {}),
        )
        for s in bench.STRATEGIES
    }
    assert tuple(tasks) == STRATEGIES
    assert tasks["ll_r"].missing_labels == "large_loss_rejection"
    assert tasks["ll_r"].missing_label_options == {"delta_rel": bench.DELTA_REL}
    assert tasks["asl"].missing_labels == "asymmetric"


def test_chosen_strategies_keep_the_order_and_reject_unknown_names(bench: ModuleType) -> None:
    chosen = bench.chosen_strategies("ll_r, em")
    assert [s.name for s in chosen] == ["em", "ll_r"]
    with pytest.raises(SystemExit, match="unknown nope; known: all_labels"):
        bench.chosen_strategies("em,nope")


def test_without_data_the_benchmark_skips_with_a_message(tmp_path: Path) -> None:
    assert_skip_without_data((SCRIPT,), tmp_path)
