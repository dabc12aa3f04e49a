"""`taskmask compare`: variants x seeds on one split, summarised as mean +- std."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from taskmask.app.cli import main
from taskmask.app.compare import load_compare, summarize, to_markdown, variant_config
from taskmask.errors import TaskmaskError


def _write(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 3))
    a = (x[:, 0] > 0).astype(float)
    a[rng.random(160) < 0.3] = np.nan
    b = (x[:, 1] > 0).astype(float)
    pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "a": a, "b": b}).to_csv(
        folder / "train.csv", index=False
    )
    run = {
        "data": {"train": "train.csv", "validation_split": 0.25, "features": ["x0", "x1", "x2"]},
        "tasks": [{"name": "a", "kind": "binary"}, {"name": "b", "kind": "binary"}],
        "model": {"trunk": {"hidden": [8]}},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.01, "train_metrics": False},
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(run))
    compare = {
        "base": "run.yaml",
        "seeds": [0, 1],
        "variants": {
            "static": {},
            "heavy_b": {"set": {"tasks.b.weight": 3.0, "training.lr": 0.02}},
            "only_a": {"drop_tasks": ["b"]},
        },
        "metrics": ["roc_auc", "accuracy"],
    }
    (folder / "compare.yaml").write_text(yaml.safe_dump(compare))
    return folder / "compare.yaml"


def test_overrides_reach_the_run_config(tmp_path: Path) -> None:
    config = load_compare(_write(tmp_path))
    heavy = variant_config("heavy_b", config.variants["heavy_b"], config.base, seed=5, split_seed=0)
    assert heavy.training.seed == 5 and heavy.training.lr == 0.02
    assert heavy.data.split_seed == 0
    assert [t.weight for t in heavy.tasks] == [1.0, 3.0]
    only = variant_config("only_a", config.variants["only_a"], config.base, seed=0, split_seed=0)
    assert [t.name for t in only.tasks] == ["a"]


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ({"drop_tasks": ["zzz"]}, "drop_tasks names unknown tasks ['zzz']"),
        ({"set": {"tasks.zzz.weight": 2}}, "no task named 'zzz'"),
        ({"set": {"training.epochz": 2}}, "training.epochz"),
    ],
)
def test_bad_variants_raise_naming_the_variant(tmp_path: Path, variant, message: str) -> None:
    path = _write(tmp_path)
    config = load_compare(path)
    bad = config.variants["static"].model_validate(variant)
    with pytest.raises(TaskmaskError) as info:
        variant_config("bad", bad, config.base, seed=0, split_seed=0)
    assert "variant 'bad'" in str(info.value) and message in str(info.value)


def test_compare_runs_every_variant_and_seed_on_one_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path)
    code = main(["compare", "--config", str(path), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "| variant |" in out and "heavy_b" in out
    assert out == (tmp_path / "out" / "summary.md").read_text()  # progress went to stderr
    assert "static, seed 0" in err and f"wrote {tmp_path / 'out'}" in err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(results["variant"]) == {"static", "heavy_b", "only_a"}
    assert set(results["seed"]) == {0, 1}
    assert set(results[results["variant"] == "only_a"]["task"]) == {"a"}
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    row = summary[
        (summary.variant == "static") & (summary.task == "a") & (summary.metric == "accuracy")
    ]
    values = results[
        (results.variant == "static") & (results.task == "a") & (results.metric == "accuracy")
    ]
    assert row["mean"].item() == pytest.approx(values["value"].mean())
    assert row["std"].item() == pytest.approx(values["value"].std(ddof=1))
    for name in ("summary.md", "comparison.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    observed = {
        json.loads((run / "metrics.json").read_text())["validation"]["a"]["n_observed"]
        for run in (tmp_path / "out" / "runs").glob("*/seed-*")
    }
    assert len(observed) == 1  # every variant and seed validated on the same rows


def test_summary_keeps_undefined_values_out_of_mean_and_std() -> None:
    results = pd.DataFrame(
        {
            "variant": ["v"] * 3,
            "seed": [0, 1, 2],
            "part": ["test"] * 3,
            "task": ["t"] * 3,
            "metric": ["roc_auc"] * 3,
            "value": [0.5, np.nan, 0.7],
        }
    )
    summary = summarize(results)
    assert summary["mean"].item() == pytest.approx(0.6)
    assert summary["n"].item() == 2 and summary["n_undefined"].item() == 1
    assert "0.6000 ± 0.1414" in to_markdown(summary)
