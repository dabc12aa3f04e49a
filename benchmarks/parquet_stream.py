"""Training streamed from Parquet larger than memory: samples/s and peak resident memory
against the same training on an in-memory slice, and peak memory against the file size.

    python benchmarks/parquet_stream.py              # full run (data generated once, 5.7 GiB)
    python benchmarks/parquet_stream.py --smoke      # a tiny data set, seconds (tests)
    python benchmarks/parquet_stream.py --work-dir D # where the generated Parquet files go
    python benchmarks/parquet_stream.py --out DIR    # where results.json / .md / .png go

Data: 10,000,000 rows x 100 float32 features (N(0, 1)) and 50 binary tasks, each label
``x @ w_t + noise > 0`` stored as a nullable int8 column with 50 % of the labels null
(missing), in 10 files of 1,000,000 rows, row groups of 100,000 rows. It is written chunk by
chunk (never all in memory) under ``--work-dir`` (default ``out/parquet_stream``) and reused.

Each figure comes from its own process, so that each peak RSS (``ru_maxrss``) is its own:

1. ``stream``: `taskmask.data.ParquetSource` over the 10 files (shuffle buffer of 100,000
   rows), `Trainer.fit` of an MLP (512, 256) with 50 heads, batch 1,024, Adam, for the first
   ``steps`` (400) batches of an epoch (a full epoch of 10,000,000 rows at this model's speed
   on 1 CPU thread takes 5 to 25 minutes here, depending on what else the machine runs).
   samples/s is timed from batch ``warmup`` (20) on, once the shuffle buffer has filled; the
   rate over all the steps, buffer filling included, is reported beside it. The trainer's
   label pass over every file (the every-task-has-a-label check) is timed apart.
2. ``memory``: the same model and steps on the first file (1,000,000 rows) read into memory.
   ``stream`` and ``memory`` run ``repeats`` (3) times, interleaved; the best run counts (the
   one least disturbed by other jobs; every run is reported). Repeats of ``stream`` check the
   first file's labels only, as the full label pass was timed in the first run.
3. ``pass, 1 file`` / ``pass, all files``: `taskmask.fit` of a small MLP (16) streaming one
   whole epoch over the first file (1,000,000 rows), then over all 10 files, standardisation
   pass included: the peak RSS after every row went through, against the number of rows.

``--smoke`` starts its four processes at once (it checks the pipeline, not the figures).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    """Data and workload sizes; `SMOKE` shrinks them to run in seconds."""

    n_rows: int = 10_000_000
    n_features: int = 100
    n_tasks: int = 50
    n_files: int = 10
    row_group: int = 100_000
    missing: float = 0.5
    hidden: tuple[int, ...] = (512, 256)
    batch_size: int = 1024
    steps: int = 400
    warmup: int = 20
    repeats: int = 3
    shuffle_buffer: int = 100_000
    pass_hidden: tuple[int, ...] = (16,)
    pass_batch: int = 4096


SMOKE = Settings(
    n_rows=20_000,
    n_features=20,
    n_tasks=5,
    n_files=2,
    row_group=2_000,
    hidden=(32,),
    batch_size=256,
    steps=6,
    warmup=2,
    repeats=1,
    shuffle_buffer=3_000,
    pass_batch=1024,
)


def data_dir(work_dir: Path, s: Settings) -> Path:
    return work_dir / f"data-{s.n_rows}x{s.n_features}x{s.n_tasks}-{s.n_files}files"


def _chunk(s: Settings, index: int, weights: np.ndarray) -> Any:
    """Row group ``index``: features and nullable int8 labels, from a seed of its own."""
    import pyarrow as pa

    rng = np.random.default_rng([7, index])
    x = rng.standard_normal((s.row_group, s.n_features), dtype=np.float32)
    logits = x @ weights + rng.standard_normal((s.row_group, s.n_tasks), dtype=np.float32)
    labels = (logits > 0).astype(np.int8)
    hidden = rng.random((s.row_group, s.n_tasks)) < s.missing
    columns = {f"x{j}": x[:, j] for j in range(s.n_features)}
    columns.update({f"y{t}": pa.array(labels[:, t], mask=hidden[:, t]) for t in range(s.n_tasks)})
    return pa.table(columns)


def generate(directory: Path, s: Settings) -> float:
    """Write the data set once (``DONE`` marks a complete one); returns the seconds spent."""
    import pyarrow.parquet as pq

    if (directory / "DONE").is_file():
        return 0.0
    groups_per_file, remainder = divmod(s.n_rows // s.row_group, s.n_files)
    if remainder or s.n_rows % s.row_group:
        raise SystemExit("n_rows must be a multiple of n_files x row_group")
    needed = s.n_rows * (4 * s.n_features + 2 * s.n_tasks) * 1.2
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    free = shutil.disk_usage(directory).free
    if free < 2 * needed:
        raise SystemExit(f"{directory}: {free / 1e9:.1f} GB free, need {2 * needed / 1e9:.1f} GB")
    start = time.perf_counter()
    weights = np.random.default_rng(0).standard_normal((s.n_features, s.n_tasks)) / 3
    weights = weights.astype(np.float32)
    for f in range(s.n_files):
        first = _chunk(s, f * groups_per_file, weights)
        with pq.ParquetWriter(directory / f"part-{f:03d}.parquet", first.schema) as writer:
            writer.write_table(first, row_group_size=s.row_group)
            for g in range(1, groups_per_file):
                writer.write_table(_chunk(s, f * groups_per_file + g, weights), s.row_group)
        print(f"  wrote {directory.name}/part-{f:03d}.parquet", flush=True)
    (directory / "DONE").write_text(json.dumps(asdict(s)))
    return time.perf_counter() - start


# Measurements, each in a process of its own (``--measure MODE``).


class FirstSteps:
    """Training data limited to the first ``steps`` batches of each epoch: a `ParquetSource`
    or in-memory `MultiTaskData` behind the trainer's streamed-data interface. It records when
    batch ``warmup`` was handed over and when the last step ended: the steady-state time of
    steps ``warmup`` to ``steps - 1`` (after the shuffle buffer filled and Adam started)."""

    def __init__(self, data: Any, steps: int, warmup: int, labels_from: Any = None) -> None:
        self.data, self.steps, self.warmup = data, steps, warmup
        self.labels_from = data if labels_from is None else labels_from
        self.times: list[float] = []

    def __len__(self) -> int:
        return len(self.data)

    def n_observed(self) -> dict[str, int]:
        return self.labels_from.n_observed()

    def batches(self, tasks: Any, batch_size: int, world: Any, *, pack: Any) -> Any:
        from taskmask.data import InMemoryBatches, ParquetSource

        if isinstance(self.data, ParquetSource):
            inner = self.data.batches(tasks, batch_size, world, pack=pack)
        else:
            inner = InMemoryBatches(pack(self.data), batch_size, world)
        limit = self

        class Limited:
            def epoch(self, generator: Any) -> Iterator[Any]:
                for i, batch in enumerate(itertools.islice(inner.epoch(generator), limit.steps)):
                    if i == limit.warmup:
                        limit.times.append(time.perf_counter())
                    yield batch
                limit.times.append(time.perf_counter())

        return Limited()


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _source(path: Path, s: Settings) -> Any:
    from taskmask import Task
    from taskmask.data import ParquetSource

    tasks = [Task(name=f"y{t}", kind="binary") for t in range(s.n_tasks)]
    features = [f"x{j}" for j in range(s.n_features)]
    return ParquetSource(path, features=features, tasks=tasks, shuffle_buffer=s.shuffle_buffer)


def _trace_rss(source: Any) -> list[tuple[int, float]]:
    """Records (rows trained, peak RSS so far) after each tenth of the rows of an epoch of
    ``source`` (by wrapping its ``batches``)."""
    trace: list[tuple[int, float]] = []
    batches = source.batches

    def traced(tasks: Any, batch_size: int, world: Any, *, pack: Any) -> Any:
        inner = batches(tasks, batch_size, world, pack=pack)

        class Traced:
            def epoch(self, generator: Any) -> Iterator[Any]:
                rows = 0
                for batch in inner.epoch(generator):
                    yield batch
                    rows += len(batch)
                    if rows >= len(source) * (len(trace) + 1) / 10:
                        trace.append((rows, _peak_mib()))

        return Traced()

    source.batches = traced
    return trace


def _pass(mode: str, directory: Path, s: Settings) -> dict[str, Any]:
    """One whole epoch of a small model, statistics pass first (`taskmask.fit`)."""
    import taskmask
    from taskmask import MLPConfig

    start = time.perf_counter()
    files = sorted(directory.glob("*.parquet"))
    source = _source(files[0] if mode == "pass, 1 file" else directory, s)
    source.standardization()  # one pass: features and labels
    scan = time.perf_counter() - start
    trace = _trace_rss(source)
    fit = taskmask.fit(
        source,
        trunk=MLPConfig(hidden=s.pass_hidden),
        epochs=1,
        batch_size=s.pass_batch,
        train_metrics=False,
        progress=False,
    )
    seconds = float(fit.history["seconds"].iloc[0])
    return {
        "scan_seconds": scan,
        "peak_rss_mib_by_rows": trace,
        "rows": len(source),
        "epoch_seconds": seconds,
        "samples_per_s": len(source) / seconds,
    }


def _steps(mode: str, directory: Path, s: Settings, label_pass: bool) -> dict[str, float]:
    """The first ``steps`` batches of the big model, streamed or from the in-memory slice.
    Without ``label_pass`` the trainer's every-task-has-a-label check reads the first file's
    labels instead of every file's (a repeat: the full pass was timed once)."""
    import torch

    from taskmask import MLPConfig, MLPTrunk, MultiTaskModel, TrainConfig, Trainer

    start = time.perf_counter()
    first = _source(sorted(directory.glob("*.parquet"))[0], s)
    data = _source(directory, s) if mode == "stream" else first.read()
    prepared = time.perf_counter()
    labels_from = data if label_pass or mode == "memory" else first
    observed = labels_from.n_observed()
    counted = time.perf_counter()
    limited = FirstSteps(data, s.steps, s.warmup, labels_from=labels_from)
    torch.manual_seed(0)
    model = MultiTaskModel(
        MLPTrunk(s.n_features, MLPConfig(hidden=s.hidden)), first.tasks, (s.n_features,)
    )
    config = TrainConfig(epochs=1, batch_size=s.batch_size, train_metrics=False, progress=False)
    history = Trainer(config).fit(model, limited)
    rows = (s.steps - s.warmup) * s.batch_size
    result = {
        "prepare_seconds": prepared - start,  # memory: reading the slice
        "rows": s.steps * s.batch_size,
        "epoch_seconds": history[0]["seconds"],
        "samples_per_s": rows / (limited.times[1] - limited.times[0]),
        "samples_per_s_whole_epoch": s.steps * s.batch_size / history[0]["seconds"],
        "n_observed": sum(observed.values()),
    }
    if label_pass and mode == "stream":
        result["label_pass_seconds"] = counted - prepared
    return result


def measure(mode: str, directory: Path, s: Settings, label_pass: bool) -> dict[str, float]:
    """One figure in this process: see the module docstring."""
    import pyarrow as pa
    import torch

    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    rss = _peak_mib()
    if mode.startswith("pass"):
        result = _pass(mode, directory, s)
    else:
        result = _steps(mode, directory, s, label_pass)
    return {"rss_after_imports_mib": rss, **result, "peak_rss_mib": _peak_mib()}


def start_measure(
    mode: str, directory: Path, smoke: bool, *, label_pass: bool = True
) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--measure", mode, "--work-dir", str(directory)]
    command += (["--smoke"] if smoke else []) + ([] if label_pass else ["--repeat"])
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_measure(mode: str, process: subprocess.Popen[str]) -> dict[str, float]:
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{mode}: failed\n{err[-3000:]}")
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    print(f"{mode}: {json.dumps(result)}", flush=True)
    return result


MODES = ("stream", "memory", "pass, 1 file", "pass, all files")


def best_of(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The repeat with the most samples/s (the least disturbed), every repeat's samples/s,
    the highest peak RSS, and the label pass of the first."""
    best = dict(max(runs, key=lambda r: r["samples_per_s"]))
    best["samples_per_s_repeats"] = [r["samples_per_s"] for r in runs]
    best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    if "label_pass_seconds" in runs[0]:
        best["label_pass_seconds"] = runs[0]["label_pass_seconds"]
    return best


def markdown(results: dict[str, dict[str, Any]], s: Settings) -> str:
    rows = [
        "| run | rows | samples/s | repeats (samples/s) | peak RSS (MiB) | other |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in results.items():
        if mode.startswith("pass"):
            other = f"standardisation + label pass {r['scan_seconds']:.0f} s"
        else:
            other = f"whole {s.steps} steps: {r['samples_per_s_whole_epoch']:,.0f} samples/s"
        if "label_pass_seconds" in r:
            other += f"; label pass over every file {r['label_pass_seconds']:.0f} s"
        if mode == "memory":
            other += f"; reading the slice {r['prepare_seconds']:.0f} s"
        repeats = ", ".join(f"{v:,.0f}" for v in r["samples_per_s_repeats"])
        rows.append(
            f"| {mode} | {int(r['rows']):,} | {r['samples_per_s']:,.0f} | {repeats} | "
            f"{r['peak_rss_mib']:,.0f} | {other} |"
        )
    ratio = results["stream"]["samples_per_s"] / results["memory"]["samples_per_s"]
    one, every = results["pass, 1 file"], results["pass, all files"]
    growth = every["peak_rss_mib"] - one["peak_rss_mib"]
    trace = ", ".join(f"{rows:,}: {mib:,.0f}" for rows, mib in every["peak_rss_mib_by_rows"])
    rows += [
        "",
        f"stream / memory samples/s: {ratio:.3f}x; peak RSS of the {int(every['rows']):,}-row "
        f"pass minus that of the {int(one['rows']):,}-row pass: {growth:+.0f} MiB",
        "",
        f"peak RSS (MiB) of the {int(every['rows']):,}-row pass after each tenth of its epoch "
        f"(rows trained: MiB): {trace}",
    ]
    return "\n".join(rows)


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = list(results)
    left.bar(names[:2], [results[n]["samples_per_s"] for n in names[:2]], color="C0")
    left.set_ylabel("samples/s (MLP 512-256, 1 thread)")
    right.bar(names, [results[n]["peak_rss_mib"] for n in names], color="C1")
    right.axhline(2048, color="k", linestyle="--", linewidth=1, label="2 GiB")
    right.set_ylabel("peak RSS (MiB)")
    right.tick_params(axis="x", labelrotation=20)
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny data set, seconds")
    parser.add_argument("--work-dir", type=Path, default=REPO / "out" / "parquet_stream")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "parquet_stream")
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    s = SMOKE if args.smoke else Settings()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.work_dir, s, not args.repeat)))
        return 0
    start = time.perf_counter()
    directory = data_dir(args.work_dir, s)
    generated = generate(directory, s)
    size = sum(p.stat().st_size for p in directory.glob("*.parquet"))
    print(f"data: {directory} ({size / 2**30:.2f} GiB; generated in {generated:.0f} s)")
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    if args.smoke:  # all at once: most of their time is importing
        running = {mode: start_measure(mode, directory, True) for mode in MODES}
        for mode, process in running.items():
            runs[mode].append(finish_measure(mode, process))
    else:
        for repeat in range(s.repeats):  # stream and memory interleaved
            for mode in MODES[:2]:
                process = start_measure(mode, directory, False, label_pass=repeat == 0)
                runs[mode].append(finish_measure(mode, process))
        for mode in MODES[2:]:
            runs[mode].append(finish_measure(mode, start_measure(mode, directory, False)))
    results = {mode: best_of(r) for mode, r in runs.items()}
    table = markdown(results, s)
    total = time.perf_counter() - start
    print(table)
    print(f"total {total:.0f} s")
    from _common import write_results  # it imports torch and taskmask: only the parent needs it

    report = {
        "settings": asdict(s),
        "data": {"directory": str(directory), "bytes": size, "generate_seconds": generated},
        "results": results,
        "stream_over_memory": results["stream"]["samples_per_s"]
        / results["memory"]["samples_per_s"],
        "total_seconds": total,
        "runs": runs,
    }
    write_results(args.out, report, table)
    plot(results, args.out / "parquet_stream.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
