"""The natural-scene benchmarks (seed 002 and its missing-rate sweep) run end to end at smoke
size and write their outputs; without ../shared/data they skip with a message and exit 0."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from benchmark_scripts import BENCHMARKS, DATA, assert_skip_without_data, smoke_runs

SCRIPTS = ("scenes", "scenes_missing_rate")
OUTPUTS = {
    "scenes": ["results.json", "results.md", "scenes.png"],
    "scenes_missing_rate": ["results.json", "results.md", "scenes_missing_rate.png"],
}
LABELS = ("desert", "mountains", "sea", "sunset", "trees")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Both smoke runs, started together (they spend much of their time importing)."""
    if not (DATA / "miml_scene" / "miml_images.tar").is_file():
        pytest.skip(f"{DATA / 'miml_scene'} is absent")
    root = tmp_path_factory.mktemp("scene_bench")
    return smoke_runs(SCRIPTS, root)


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_writes_its_outputs(smoke: dict[str, tuple[Path, str]], script: str) -> None:
    out_dir, stdout = smoke[script]
    for name in OUTPUTS[script]:
        assert (out_dir / name).stat().st_size > 0, name
    report = json.loads((out_dir / "results.json").read_text())
    assert report["runs"] and report["summary"]
    assert report["threads"] == 1
    assert "total" in stdout


def test_scenes_smoke_reports_every_metric_at_both_thresholds(
    smoke: dict[str, tuple[Path, str]],
) -> None:
    out_dir, stdout = smoke["scenes"]
    report = json.loads((out_dir / "results.json").read_text())
    assert set(report["summary"]) == {
        f"{variant}/{rule}"
        for variant in ("all_labels", "masked", "fill_negative")
        for rule in ("0.5", "tuned")
    }
    for run in report["runs"]:
        for rule in ("0.5", "tuned"):
            scores = run["scores"][rule]
            for key in ("f1_macro", "f1_micro", "exact_match", "hamming_loss", "keras_acc"):
                assert 0.0 <= scores[key] <= 1.0, key
            for label in LABELS:
                for metric in ("precision", "recall", "f1", "roc_auc"):
                    assert f"{metric}/{label}" in scores
            assert scores["n_complete"] == report["split"]["test"]  # test labels all observed
        assert len(run["scores"]["tuned"]["thresholds"]) == 5
        assert run["scores"]["0.5"]["roc_auc_macro"] == run["scores"]["tuned"]["roc_auc_macro"]
    # predictions come out as label names, at 0.5 and at the tuned thresholds
    for rows in report["examples"].values():
        assert rows and set(rows[0]) == {"image", "true", "at 0.5", "tuned"}
        for row in rows:
            for column in ("at 0.5", "tuned"):
                names = row[column].split(";")
                assert names == ["(none)"] or set(names) <= set(LABELS), row
    assert "at 0.5" in stdout and ".jpg" in stdout


def test_scenes_sweep_smoke_covers_every_method_and_mechanism(
    smoke: dict[str, tuple[Path, str]],
) -> None:
    report = json.loads((smoke["scenes_missing_rate"][0] / "results.json").read_text())
    cells = {(r["mechanism"], r["rate"], r["method"]) for r in report["summary"]}
    methods = ("masked", "fill_negative", "drop_rows", "single_task")
    assert cells == {(m, rate, x) for m in ("mcar", "mnar") for rate in (0.0, 0.5) for x in methods}
    for row in report["summary"]:
        assert 0.0 <= row["roc_auc_macro"] <= 1.0
        assert 0 <= row["no_model"] <= 5
    zero = {r["method"]: r["roc_auc_macro"] for r in report["summary"] if r["rate"] == 0.0}
    for row in report["summary"]:  # the 0 % runs count for both mechanisms
        if row["rate"] == 0.0:
            assert row["roc_auc_macro"] == zero[row["method"]]


@pytest.fixture(scope="module")
def scenes_module():
    """benchmarks/scenes.py and the helpers it shares with the sweep (_scenes.py), as one."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import _scenes
        import scenes
    finally:
        sys.path.remove(str(BENCHMARKS))
    return SimpleNamespace(**{**vars(_scenes), **vars(scenes)})


def test_keras_accuracy_is_categorical_accuracy(scenes_module) -> None:
    probs = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.1], [0.1, 0.2, 0.7]])
    target = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # row 0: arg-max 0 is not a true label; row 1 and row 2 hit the first true label
    assert scenes_module.keras_accuracy(probs, target) == pytest.approx(2 / 3)


def test_random_flip_mirrors_some_rows_in_training_only(scenes_module) -> None:
    import torch

    x = torch.arange(2 * 64 * 3 * 4, dtype=torch.float32).reshape(64, 2, 3, 4)
    flip = scenes_module.RandomFlip(torch.nn.Identity())
    torch.manual_seed(0)
    out = flip.train()(x)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())  # every row is one or the other, never mixed
    assert 16 < int(mirrored.sum()) < 48
    assert torch.equal(flip.eval()(x), x)


def test_train_repeats_whatever_the_global_generator_held(scenes_module) -> None:
    import torch

    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.random((40, 3, 32, 32), dtype=np.float32))
    Y = (rng.random((40, 5)) < 0.4).astype(float)
    settings = scenes_module.SMOKE
    task = scenes_module.Task(name="scene", kind="multilabel", labels=LABELS)
    rows = (np.arange(30), np.arange(30, 40))
    weights = []
    for state in (1, 2):
        torch.manual_seed(state)  # what an earlier fit in the process would leave behind
        model = scenes_module.train(X, Y[:30], Y[30:], rows, task, settings, seed=0).model
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_development_labels_hide_train_and_validation_only(scenes_module) -> None:
    rng = np.random.default_rng(0)
    Y = (rng.random((2000, 5)) < 0.25).astype(float)
    parts = scenes_module.scene_split(2000)
    assert [len(p) for p in parts] == [1400, 200, 400]
    y_train, y_val = scenes_module.development_labels(Y, parts, "masked", 0.3, seed=1)
    hidden = np.isnan(np.concatenate([y_train, y_val])).mean()
    assert 0.27 < hidden < 0.33
    seen = ~np.isnan(y_train)
    assert np.array_equal(y_train[seen], Y[parts.train][seen])
    filled, y_val_fill = scenes_module.development_labels(Y, parts, "fill_negative", 0.3, seed=1)
    assert not np.isnan(filled).any() and np.array_equal(np.isnan(y_val_fill), np.isnan(y_val))
    assert np.array_equal(filled, np.nan_to_num(y_train)) and (filled[~seen] == 0).all()
    full = scenes_module.development_labels(Y, parts, "all_labels", 0.3, seed=1)
    assert np.array_equal(full[0], Y[parts.train]) and np.array_equal(full[1], Y[parts.validation])


def test_without_data_each_benchmark_skips_with_a_message(tmp_path: Path) -> None:
    assert_skip_without_data(SCRIPTS, tmp_path)
