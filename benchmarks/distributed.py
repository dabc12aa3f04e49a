"""Distributed training throughput: `Trainer.fit` samples/s on one process and on two processes
under torchrun (gloo, CPU), on the same global batches of a compute-bound workload.

    python benchmarks/distributed.py                  # full run, a few minutes on 2 CPU cores
    python benchmarks/distributed.py --smoke          # seconds; run by tests/test_distributed.py
    python benchmarks/distributed.py --json out.json  # also write every figure as JSON

Workload: rows x 100 features, 20 binary tasks with 50 % of the labels missing, an MLP
(1024, 1024) (about 1.2 M parameters), global batch 512, Adam, ``train_metrics=False``. Each
process runs one torch thread, so two processes use two cores; "1 process, 2 threads" (one
process, intra-op parallelism over both cores) is timed too, as the alternative on one machine.
Two processes each compute half of every global batch and all-reduce the gradients (4.7 MB)
once a step, so the ratio tells how much of a second core data parallelism turns into
throughput.

One process runs in the benchmark's own process, two in fresh ones under torchrun. The process
group starts during a warm-up epoch; only the epochs after it are timed: wall clock on rank 0,
and the CPU time of all the processes together. Samples per CPU-second, and its ratio between
2 processes and 1 (the CPU efficiency: the share of the work that is not distribution overhead),
depend much less than the wall-clock ratio on what else keeps the cores busy. Configurations are
interleaved over ``--repeats`` rounds and the best round counts: the least disturbed by whatever
else shares the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskmask import MLPConfig, MLPTrunk, MultiTaskModel, Task, TrainConfig, Trainer, make_data
from taskmask._world import is_main, rank

FULL = {"rows": 32_768, "hidden": (1024, 1024), "epochs": 2, "repeats": 3}
SMOKE = {"rows": 1_024, "hidden": (64,), "epochs": 1, "repeats": 1}
N_FEATURES, N_TASKS, BATCH = 100, 20, 512
CONFIGS = {  # name: (processes, torch threads per process)
    "1 process": (1, 1),
    "2 processes": (2, 1),
    "1 process, 2 threads": (1, 2),
}


def worker(rows: int, hidden: tuple[int, ...], epochs: int, threads: int, out: Path) -> None:
    """Train under whatever world this process is in; rank 0 writes its timing to ``out``."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, N_FEATURES)).astype(np.float32)
    labels = (x[:, :N_TASKS] > 0).astype(np.float32)
    labels[rng.random(labels.shape) < 0.5] = np.nan
    tasks = [Task(name=f"t{i}", kind="binary") for i in range(N_TASKS)]
    data = make_data(x, {t.name: labels[:, i] for i, t in enumerate(tasks)}, tasks)
    torch.manual_seed(0)
    model = MultiTaskModel(MLPTrunk(N_FEATURES, MLPConfig(hidden=hidden)), tasks, (N_FEATURES,))
    config = TrainConfig(
        epochs=1, batch_size=BATCH, train_metrics=False, progress=False, device="cpu"
    )
    Trainer(config).fit(model, data)  # warm-up; starts the process group
    start, cpu_start = time.perf_counter(), time.process_time()
    Trainer(config.model_copy(update={"epochs": epochs})).fit(model, data)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    Path(f"{out}.rank{rank()}").write_text(json.dumps({"cpu_seconds": cpu}))
    if is_main():
        world = int(os.environ.get("WORLD_SIZE", "1"))
        result = {"seconds": seconds, "samples_per_s": rows * epochs / seconds, "world": world}
        out.write_text(json.dumps(result))


def launch(processes: int, threads: int, sizes: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run `worker`: in this process for one process, else in fresh ones under torchrun."""
    hidden = tuple(sizes["hidden"])
    if processes == 1:
        before = torch.get_num_threads()
        worker(sizes["rows"], hidden, sizes["epochs"], threads, out)
        torch.set_num_threads(before)
        return _result(out, 1, sizes)
    script = [str(Path(__file__).resolve()), "--worker", str(out), "--threads", str(threads)]
    script += ["--rows", str(sizes["rows"]), "--epochs", str(sizes["epochs"])]
    script += ["--hidden", ",".join(map(str, hidden))]
    runner = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    runner += [f"--nproc_per_node={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    run = subprocess.run([*runner, *script], env=env, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"{processes} processes failed:\n{run.stderr[-3000:]}")
    return _result(out, processes, sizes)


def _result(out: Path, processes: int, sizes: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's timing plus the CPU time of all the processes together, per sample."""
    result: dict[str, Any] = json.loads(out.read_text())
    cpu = sum(
        json.loads(Path(f"{out}.rank{r}").read_text())["cpu_seconds"] for r in range(processes)
    )
    result["samples_per_cpu_s"] = sizes["rows"] * sizes["epochs"] / cpu
    return result


def bench(sizes: dict[str, Any]) -> dict[str, Any]:
    best: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(sizes["repeats"]):
            for name, (processes, threads) in CONFIGS.items():
                out = Path(tmp) / f"{round_}-{processes}-{threads}.json"
                result = launch(processes, threads, sizes, out)
                if name not in best or result["samples_per_s"] > best[name]["samples_per_s"]:
                    best[name] = result
    one = best["1 process"]
    return {
        "samples_per_s": {name: r["samples_per_s"] for name, r in best.items()},
        "samples_per_cpu_s": {name: r["samples_per_cpu_s"] for name, r in best.items()},
        "ratio_2_processes_over_1": best["2 processes"]["samples_per_s"] / one["samples_per_s"],
        "ratio_2_threads_over_1": (
            best["1 process, 2 threads"]["samples_per_s"] / one["samples_per_s"]
        ),
        "cpu_efficiency_2_processes": (
            best["2 processes"]["samples_per_cpu_s"] / one["samples_per_cpu_s"]
        ),
    }


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "backend": "gloo",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="taskmask distributed throughput benchmark")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, runs in seconds")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hidden", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        hidden = tuple(int(h) for h in args.hidden.split(","))
        worker(args.rows, hidden, args.epochs, args.threads, args.worker)
        return 0
    sizes = SMOKE if args.smoke else FULL
    results = {"environment": environment(), "sizes": {**sizes, "batch": BATCH}}
    results.update(bench(sizes))
    results["environment"]["load_average_end"] = os.getloadavg()[0]
    print(f"rows {sizes['rows']}, MLP {sizes['hidden']}, batch {BATCH}, {N_TASKS} tasks")
    for name, rate in results["samples_per_s"].items():
        per_cpu = results["samples_per_cpu_s"][name]
        print(f"{name:>22}: {rate:10,.0f} samples/s {per_cpu:10,.0f} samples/CPU-s")
    print(f"2 processes / 1 process: {results['ratio_2_processes_over_1']:.2f}x")
    print(f"1 process 2 threads / 1 process: {results['ratio_2_threads_over_1']:.2f}x")
    print(
        "CPU efficiency of 2 processes (samples/CPU-s over 1 process's): "
        f"{results['cpu_efficiency_2_processes']:.2f}"
    )
    print(
        f"load average: {results['environment']['load_average']:.1f} at the start, "
        f"{results['environment']['load_average_end']:.1f} at the end"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
