"""The feature-cache benchmark runs at smoke size: it writes one cache entry, reports a wall and
a CPU time for every step and ratios that are their quotients; without ../shared/data it skips."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from benchmark_scripts import DATA, assert_skip_without_data, smoke_runs


def test_smoke_run_reports_every_step(tmp_path: Path) -> None:
    pytest.importorskip("rdkit", reason="the chem extra (RDKit) is not installed")
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is absent")
    out, printed = smoke_runs(["feature_cache"], tmp_path)["feature_cache"]
    report = json.loads((out / "results.json").read_text())
    assert report["rows"] == 60
    steps = {"featurise": ["off", "first", "second"], "cli": ["train_off", "train_on"]}
    for part, names in steps.items():
        for name in names:
            for clock in ("wall_s", "cpu_s"):
                value = report[part][name][clock]
                assert math.isfinite(value) and value >= 0, (part, name, clock)
    f, c = report["featurise"], report["cli"]
    assert report["ratios"]["featurise_second_over_first"] == pytest.approx(
        f["second"]["wall_s"] / f["first"]["wall_s"]
    )
    assert report["ratios"]["train_on_over_off"] == pytest.approx(
        c["train_on"]["wall_s"] / c["train_off"]["wall_s"]
    )
    assert len(list((out / "cache" / "features").glob("*.npz"))) == 1
    assert "featurise second" in printed


def test_skips_without_data(tmp_path: Path) -> None:
    assert_skip_without_data(["feature_cache"], tmp_path)
