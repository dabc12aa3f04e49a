"""The feature cache on Tox21: RDKit descriptors computed on the first run, read on the next.

    python benchmarks/feature_cache.py            # the 7,831 Tox21 molecules, RDKit descriptors
    python benchmarks/feature_cache.py --smoke    # 60 molecules, seconds (tests/benchmarks)

In one process, with a fresh cache folder (``TASKMASK_CACHE_DIR``, under ``--out``):

1. ``featurise``: `SmilesFeatures(kind=descriptors).featurize` of the SMILES column, with the
   cache off, then on and empty (it computes and writes the entry), then on again (it reads it);
2. ``cli``: ``taskmask train`` (2 epochs) of the 12 assays on the descriptors with the cache
   off, then ``train`` again, ``evaluate`` and ``predict`` on the same file with the cache on,
   the entry written by step 1 still there.

Wall and CPU (``time.process_time``) seconds of each, and the warm / cold ratios; results in
``OUT/results.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from _common import benchmark_parser, data_missing, environment

TASKS = [
    "NR-AR",
    "NR-AR-LBD",
    "NR-AhR",
    "NR-Aromatase",
    "NR-ER",
    "NR-ER-LBD",
    "NR-PPAR-gamma",
    "SR-ARE",
    "SR-ATAD5",
    "SR-HSE",
    "SR-MMP",
    "SR-p53",
]


def timed(step: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = step()
    return result, {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def featurise(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    from taskmask.data.chem import SmilesFeatures

    smiles = frame["smiles"].tolist()
    figures = {}
    cold, figures["off"] = timed(
        lambda: SmilesFeatures(kind="descriptors", cache=False).featurize(smiles)
    )
    spec = SmilesFeatures(kind="descriptors")
    first, figures["first"] = timed(lambda: spec.featurize(smiles))
    second, figures["second"] = timed(lambda: spec.featurize(smiles))
    assert (cold[0] == second[0]).all() and (first[1] == second[1]).all(), "cache changed X"
    assert [f.row for f in first[2]] == [f.row for f in second[2]]
    return figures


def cli(out: Path) -> dict[str, dict[str, float]]:
    from taskmask.app.cli import main

    def config(cache: bool) -> Path:
        raw = {
            "data": {
                "train": str(out / "tox21.csv"),
                "smiles": {"column": "smiles", "kind": "descriptors", "cache": cache},
                "validation_split": 0.2,
            },
            "tasks": [{"name": name, "kind": "binary"} for name in TASKS],
            "model": {"trunk": {"hidden": [256]}},
            "training": {"epochs": 2, "batch_size": 256, "lr": 1e-3, "seed": 0},
        }
        path = out / f"run_cache_{cache}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    def run(*argv: str) -> None:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            code = main([*argv, "--quiet"] if argv[0] == "train" else list(argv))
        assert code == 0, argv

    data = str(out / "tox21.csv")
    figures = {}
    _, figures["train_off"] = timed(
        lambda: run("train", "--config", str(config(False)), "--out", str(out / "off"))
    )
    _, figures["train_on"] = timed(
        lambda: run("train", "--config", str(config(True)), "--out", str(out / "on"))
    )
    _, figures["evaluate_on"] = timed(lambda: run("evaluate", str(out / "on"), "--data", data))
    _, figures["predict_on"] = timed(
        lambda: run("predict", str(out / "on"), "--data", data, "--out", str(out / "p.csv"))
    )
    return figures


def main() -> None:
    parser = benchmark_parser(__doc__ or "", "feature_cache", seeds=1)
    args = parser.parse_args()
    path = args.data_dir / "tox21" / "tox21.csv.gz"
    if data_missing(path, "Tox21", args.data_dir):
        return
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    os.environ["TASKMASK_CACHE_DIR"] = str(out / "cache")
    for entry in (out / "cache").rglob("*.npz"):
        entry.unlink()
    frame = pd.read_csv(path)
    if args.smoke:
        frame = frame.head(60)
    frame.to_csv(out / "tox21.csv", index=False)
    load = os.getloadavg()
    results: dict[str, Any] = {"rows": len(frame), "load_before": load}
    results["featurise"] = featurise(frame)
    results["cli"] = cli(out)
    results["load_after"] = os.getloadavg()
    results["environment"] = environment()
    f, c = results["featurise"], results["cli"]
    results["ratios"] = {
        "featurise_second_over_first": f["second"]["wall_s"] / f["first"]["wall_s"],
        "train_on_over_off": c["train_on"]["wall_s"] / c["train_off"]["wall_s"],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"rows {len(frame)}  load before {load[0]:.1f}")
    for part in ("featurise", "cli"):
        for name, t in results[part].items():
            print(f"{part:9s} {name:12s} wall {t['wall_s']:8.2f} s  cpu {t['cpu_s']:8.2f} s")
    for name, ratio in results["ratios"].items():
        print(f"ratio {name:30s} {ratio:.4f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
