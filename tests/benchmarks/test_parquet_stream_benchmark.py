"""The Parquet streaming benchmark runs end to end at smoke size: it generates its data once,
measures each mode in a process of its own, and writes every figure it promises."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
MODES = {"stream", "memory", "pass, 1 file", "pass, all files"}


def test_smoke_run_writes_its_figures(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    command = [sys.executable, str(BENCHMARKS / "parquet_stream.py"), "--smoke"]
    command += ["--work-dir", str(work), "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    results, settings = report["results"], report["settings"]
    assert set(results) == MODES
    for figures in results.values():
        assert math.isfinite(figures["samples_per_s"]) and figures["samples_per_s"] > 0
        assert figures["peak_rss_mib"] >= figures["rss_after_imports_mib"] > 0
    assert results["stream"]["rows"] == settings["steps"] * settings["batch_size"]
    assert results["memory"]["rows"] == results["stream"]["rows"]
    assert results["pass, all files"]["rows"] == settings["n_rows"]
    assert results["pass, 1 file"]["rows"] == settings["n_rows"] // settings["n_files"]
    trace = results["pass, all files"]["peak_rss_mib_by_rows"]
    assert len(trace) == 10 and trace[-1][0] == settings["n_rows"]
    assert all(a[0] < b[0] and a[1] <= b[1] for a, b in itertools.pairwise(trace))
    ratio = results["stream"]["samples_per_s"] / results["memory"]["samples_per_s"]
    assert report["stream_over_memory"] == ratio
    assert "stream / memory samples/s" in (out / "results.md").read_text()
    assert (out / "parquet_stream.png").stat().st_size > 0
    files = sorted(Path(report["data"]["directory"]).glob("*.parquet"))
    assert len(files) == settings["n_files"]
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import parquet_stream
    finally:
        sys.path.remove(str(BENCHMARKS))
    smoke = parquet_stream.SMOKE
    assert parquet_stream.generate(parquet_stream.data_dir(work, smoke), smoke) == 0.0  # cached
    import pyarrow.parquet as pq

    first = pq.ParquetFile(files[0])
    assert first.metadata.num_rows == smoke.n_rows // smoke.n_files
    assert first.metadata.row_group(0).num_rows == smoke.row_group
    labels = first.read_row_group(0, columns=["y0"]).column("y0")
    assert abs(labels.null_count / len(labels) - smoke.missing) < 0.05  # about half missing
