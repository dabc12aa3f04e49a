"""The seed 003 / 004 experiment scripts run end to end at smoke size, write finite tables and a
plot, and skip cleanly (exit 0, a message) without the shared data."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Script:
    path: Path
    data: tuple[str, ...]  # files under the data dir it needs
    outputs: tuple[str, ...]  # files it writes under --out
    finite: dict[str, tuple[str, ...]]  # variant -> result columns that must be finite


SCRIPTS = {
    "hmp_auxiliary": Script(
        ROOT / "examples" / "hmp_auxiliary.py",
        ("hmp_adl/HMP_Dataset.tar.gz",),
        ("results.csv", "test_summary.csv", "vs_baseline.csv", "summary.md", "run.json", "f1.png"),
        {
            variant: ("test f1_macro", "test f1_weighted", "test accuracy", "val f1_macro")
            for variant in ("baseline", "fourier")
        },
    ),
    "utkface_age_gender": Script(
        ROOT / "examples" / "utkface_age_gender.py",
        ("utkface_subset/utkface_labels.csv", "utkface_subset/utkface_9780_images.tar"),
        ("results.csv", "test_summary.csv", "vs_per_task.csv", "summary.md", "metrics.png"),
        {
            **{
                variant: ("age mae_years", "age r2", "gender accuracy", "gender roc_auc")
                for variant in ("both_labels", "per_task", "diluted")
            },
            "single_age": ("age mae_years", "age r2"),
            "single_gender": ("gender accuracy", "gender roc_auc"),
        },
    ),
    "weighting": Script(
        ROOT / "benchmarks" / "weighting.py",
        ("hmp_adl/HMP_Dataset.tar.gz",),
        ("results.csv", "test_summary.csv", "vs_static.csv", "summary.md", "weighting.png"),
        {
            method: ("activity f1_macro", "activity accuracy", "fourier r2", "final weight fourier")
            for method in ("static", "uncertainty", "dwa", "gradnorm", "famo", "upgrad")
        },
    ),
}


def _run(script: Script, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script.path), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_smoke_run_writes_finite_tables_and_a_plot(name: str, tmp_path: Path) -> None:
    script = SCRIPTS[name]
    absent = [f for f in script.data if not (DATA_DIR / f).is_file()]
    if absent:
        pytest.skip(f"shared data absent: {DATA_DIR / absent[0]}")
    out = tmp_path / "out"
    run = _run(script, "--smoke", "--out", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "wrote" in run.stdout
    for filename in script.outputs:
        path = out / filename
        assert path.is_file() and path.stat().st_size > 0, filename
    png = next(out.glob("*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = pd.read_csv(out / "results.csv")
    assert set(results["variant"]) == set(script.finite)
    for variant, columns in script.finite.items():
        part = results[results["variant"] == variant]
        for column in columns:
            assert all(math.isfinite(v) for v in part[column]), (variant, column, part[column])
    summary = pd.read_csv(out / "test_summary.csv")
    assert len(summary) == len(set(results["variant"]))
    assert "| " in (out / "summary.md").read_text(encoding="utf-8")


def test_scripts_skip_cleanly_without_data(tmp_path: Path) -> None:
    runs = {
        name: subprocess.Popen(
            [
                sys.executable,
                str(script.path),
                "--smoke",
                "--data-dir",
                str(tmp_path / "no-data"),
                "--out",
                str(tmp_path / name),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name, script in SCRIPTS.items()
    }  # started together: most of each run is importing torch
    for name, process in runs.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, (name, stderr[-3000:])
        assert "SKIPPED" in stdout and "no-data" in stdout, (name, stdout)
        assert not (tmp_path / name).exists(), name
