"""What a run writes at 617 binary tasks: stdout/stderr bytes, run-directory sizes, the time to
write the outputs, and the checkpoint JSON's size, for this checkout and optionally another.

    python benchmarks/many_task_outputs.py --smoke    # seconds; tests/test_many_task_outputs.py
    python benchmarks/many_task_outputs.py --before /tmp/old/src   # 8,600 x 2,048, 617 tasks

The data are generated (binary fingerprint-like features, 55 % of the labels missing) as one
Parquet file; each version trains it with ``taskmask train`` in a fresh process (its ``src``
first on ``sys.path``), timed around the run directory's writing (``_write_run``) and measuring
``checkpoint.json`` after every checkpoint. Results: ``OUT/results.json`` and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]

DRIVER = """
import json, sys, time
from pathlib import Path
import taskmask.app.runs as runs
from taskmask.training import checkpoint
from taskmask.app.cli import main

figures = {"write_s": 0.0, "checkpoint_json_bytes": 0}
write_run, save = runs._write_run, checkpoint.save

def timed_write(directory, run, **options):
    start = time.perf_counter()
    write_run(directory, run, **options)
    figures["write_s"] += time.perf_counter() - start

def measured_save(directory, state):
    path = save(directory, state)
    size = (Path(directory) / checkpoint.INDEX_FILE).stat().st_size
    figures["checkpoint_json_bytes"] = max(figures["checkpoint_json_bytes"], size)
    return path

runs._write_run, checkpoint.save = timed_write, measured_save
start = time.perf_counter()
code = main(["train", "--config", sys.argv[1], "--out", sys.argv[2]])
figures["total_s"] = time.perf_counter() - start
Path(sys.argv[3]).write_text(json.dumps(figures))
sys.exit(code)
"""


def make_data(path: Path, *, n_rows: int, n_bits: int, n_tasks: int, seed: int = 0) -> None:
    """Binary features and ``n_tasks`` binary labels of which 55 % are missing (NaN)."""
    rng = np.random.default_rng(seed)
    bits = (rng.random((n_rows, n_bits)) < 0.1).astype(np.float32)
    weights = rng.normal(size=(n_bits, n_tasks)).astype(np.float32)
    scores = bits @ weights
    labels = (scores > np.median(scores, axis=0)).astype(np.float32)
    labels[rng.random(labels.shape) < 0.55] = np.nan
    frame = pd.DataFrame(bits, columns=[f"bit{j}" for j in range(n_bits)])
    targets = pd.DataFrame(labels, columns=[f"task{t}" for t in range(n_tasks)])
    pd.concat([frame, targets], axis=1).to_parquet(path, index=False)


def write_config(path: Path, data: Path, *, n_bits: int, n_tasks: int, epochs: int) -> None:
    config = {
        "data": {
            "train": str(data),
            "validation_split": 0.2,
            "features": [f"bit{j}" for j in range(n_bits)],
        },
        "tasks": [{"name": f"task{t}", "kind": "binary"} for t in range(n_tasks)],
        "model": {"trunk": {"hidden": [256]}},
        "training": {"epochs": epochs, "batch_size": 256, "lr": 1e-3, "seed": 0},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def run_version(src: Path, config: Path, out: Path) -> dict[str, Any]:
    """Train with the taskmask of ``src`` in a fresh process; its figures."""
    figures_path = out.with_suffix(".json")
    process = subprocess.run(
        [sys.executable, "-c", DRIVER, str(config), str(out), str(figures_path)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"},
        check=False,
    )
    if process.returncode != 0:
        raise SystemExit(f"{src}: taskmask train failed:\n{process.stderr.decode()[-3000:]}")
    figures = json.loads(figures_path.read_text())
    files = [p for p in out.rglob("*") if p.is_file()]
    figures.update(
        stdout_bytes=len(process.stdout),
        stderr_bytes=len(process.stderr),
        run_dir_bytes=sum(p.stat().st_size for p in files),
        n_files=len(files),
        n_plots=len([p for p in files if p.suffix == ".png"]),
        largest={
            p.name: p.stat().st_size for p in sorted(files, key=lambda p: -p.stat().st_size)[:4]
        },
    )
    return figures


def table(results: dict[str, dict[str, Any]]) -> str:
    keys = [
        ("stdout_bytes", "stdout bytes"),
        ("stderr_bytes", "stderr bytes"),
        ("run_dir_bytes", "run directory bytes"),
        ("n_plots", "PNG files"),
        ("write_s", "writing the run directory (s)"),
        ("checkpoint_json_bytes", "checkpoint.json bytes"),
        ("total_s", "whole run (s)"),
    ]
    names = list(results)
    lines = ["| figure | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, title in keys:
        values = [results[n][key] for n in names]
        text = [f"{v:.2f}" if isinstance(v, float) else f"{v:,}" for v in values]
        lines.append(f"| {title} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny problem, seconds")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "many_task_outputs")
    parser.add_argument("--before", type=Path, help="another checkout's src directory")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    size = (
        {"n_rows": 200, "n_bits": 32, "n_tasks": 20}
        if args.smoke
        else {"n_rows": 8600, "n_bits": 2048, "n_tasks": 617}
    )
    epochs = 1 if args.smoke else args.epochs
    args.out.mkdir(parents=True, exist_ok=True)
    data, config = args.out / "data.parquet", args.out / "run.yaml"
    make_data(data, **size)
    write_config(config, data, n_bits=size["n_bits"], n_tasks=size["n_tasks"], epochs=epochs)
    versions = {"after": REPO / "src"}
    if args.before is not None:
        versions = {"before": args.before.resolve(), **versions}
    results = {name: run_version(src, config, args.out / name) for name, src in versions.items()}
    report = {"settings": {**size, "epochs": epochs}, "results": results}
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{size['n_tasks']} binary tasks, {size['n_rows']} rows x {size['n_bits']} bits, "
        f"{epochs} epochs"
    )
    print(table(results))


if __name__ == "__main__":
    main()
