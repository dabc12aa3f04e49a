"""Running the benchmark scripts from tests: smoke runs started side by side (they spend much
of their time importing), and the clean skip without ../shared/data."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def smoke_runs(scripts: Sequence[str], root: Path) -> dict[str, tuple[Path, str]]:
    """Each script's ``--smoke`` run with ``--out root/<script>``: its out dir and stdout;
    an assertion error with its stderr when one fails."""
    running = {s: start(s, "--smoke", "--out", str(root / s)) for s in scripts}
    results = {}
    for script, process in running.items():
        code, out, err = finish(process)
        assert code == 0, f"{script}: {err[-3000:]}"
        results[script] = (root / script, out)
    return results


def assert_skip_without_data(scripts: Sequence[str], empty: Path) -> None:
    """Given an empty ``--data-dir``, each script says ``skipped: ...`` naming it, exits 0 and
    writes nothing."""
    running = {s: start(s, "--data-dir", str(empty), "--out", str(empty)) for s in scripts}
    for script, process in running.items():
        code, out, err = finish(process)
        assert code == 0, f"{script}: {err[-2000:]}"
        assert out.startswith("skipped:") and str(empty) in out, out
    assert not any(empty.iterdir())
