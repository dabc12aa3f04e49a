"""The many-task outputs benchmark runs at smoke size and reports every figure of its table."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark_scripts import smoke_runs

FIGURES = ("stdout_bytes", "stderr_bytes", "run_dir_bytes", "n_plots", "write_s", "total_s")


def test_the_smoke_run_reports_sizes_and_times(tmp_path: Path) -> None:
    out, printed = smoke_runs(["many_task_outputs"], tmp_path)["many_task_outputs"]
    report = json.loads((out / "results.json").read_text())
    assert report["settings"]["n_tasks"] == 20 and list(report["results"]) == ["after"]
    after = report["results"]["after"]
    assert all(after[key] >= 0 for key in FIGURES)
    assert after["n_plots"] == 2  # plots: summary, the default: loss.png and summary.png
    assert after["checkpoint_json_bytes"] > 0 and 0 < after["write_s"] < after["total_s"]
    assert "history_long.parquet" in {p.name for p in (out / "after").iterdir()}
    assert "| checkpoint.json bytes |" in printed and "20 binary tasks" in printed
