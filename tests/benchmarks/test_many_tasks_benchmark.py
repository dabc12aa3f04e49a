"""The many-task benchmark runs at smoke size and reports every figure its README table uses."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from benchmark_scripts import smoke_runs

VARIANTS = ("hand", "taskmask", "per_task")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out, printed = smoke_runs(["many_tasks"], tmp_path_factory.mktemp("bench"))["many_tasks"]
    return json.loads((Path(out) / "results.json").read_text()), printed


def test_every_size_has_positive_step_times(smoke: tuple[dict[str, Any], str]) -> None:
    report, _ = smoke
    assert [row["tasks"] for row in report["rows"]] == report["settings"]["tasks"]
    for row in report["rows"]:
        for variant in VARIANTS:
            for clock in ("", "_cpu"):
                value = row[f"{variant}_ms{clock}"]
                assert isinstance(value, float) and math.isfinite(value) and value > 0


def test_ratios_are_the_quotients_of_the_step_times(smoke: tuple[dict[str, Any], str]) -> None:
    report, _ = smoke
    for row in report["rows"]:
        for variant in VARIANTS[1:]:
            for clock in ("", "_cpu"):
                expected = row[f"{variant}_ms{clock}"] / row[f"hand_ms{clock}"]
                assert row[f"{variant}_ratio{clock}"] == pytest.approx(expected)


def test_the_table_and_environment_are_written(smoke: tuple[dict[str, Any], str]) -> None:
    report, printed = smoke
    assert report["environment"]["threads"] == 1 and report["target_ratio"] == 1.15
    assert "set_num_threads(1)" in printed and "taskmask / hand" in printed
    assert printed.count("\n| ") >= 2 + len(report["rows"]) - 1
