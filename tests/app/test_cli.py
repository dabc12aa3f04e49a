"""The command line, in process: train -> evaluate -> predict, and bad input -> exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import taskmask.app.runs as runs
from taskmask.app.cli import main
from taskmask.app.config import load_config
from taskmask.app.runs import train_run
from taskmask.model import raw_outputs
from taskmask.persistence import load_model

FEATURES = ["x0", "x1", "x2"]
SMALL_TRAINING = {"epochs": 2, "batch_size": 64, "lr": 0.01, "seed": 0}


def make_table(n_rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """Features x0..x2 and four tasks' labels, each with empty cells."""
    rng = np.random.default_rng(seed)
    x = rng.random((n_rows, 3))

    def holes(values: Any) -> pd.Series:
        return pd.Series(values).mask(rng.random(n_rows) < 0.3)

    frame = pd.DataFrame({name: x[:, j] for j, name in enumerate(FEATURES)})
    frame["tox"] = holes(x[:, 0] > 0.5).astype("Int8")
    frame["sea"] = holes(x[:, 1] > 0.5).astype("Int8")
    frame["sun"] = holes(x[:, 2] > 0.5).astype("Int8")
    frame["colour"] = holes(np.array(["red", "green", "blue"])[x.argmax(axis=1)])
    frame["age"] = holes(30 + 10 * x[:, 0])
    return frame


def config_dict(train: str = "train.csv", **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "data": {"train": train, "features": FEATURES, "validation_split": 0.25},
        "tasks": [
            {"name": "tox", "kind": "binary"},
            {"name": "scene", "kind": "multilabel", "columns": ["sea", "sun"]},
            {"name": "colour", "kind": "multiclass"},
            {"name": "age", "kind": "regression", "weight": 0.1},
        ],
        "model": {"trunk": {"hidden": [8]}},
        "training": SMALL_TRAINING,
    }
    raw.update(changes)
    return raw


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    make_table().to_csv(tmp_path / "train.csv", index=False)
    return tmp_path


def write_config(directory: Path, raw: dict[str, Any] | str) -> Path:
    path = directory / "run.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@dataclass(frozen=True)
class Trained:
    """A run trained once for the tests that only read it, and what ``train`` printed."""

    run: Path
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """``train.csv``, ``test.csv`` and the run directory ``run``, in one folder."""
    directory = tmp_path_factory.mktemp("trained")
    make_table().to_csv(directory / "train.csv", index=False)
    make_table(40, seed=1).to_csv(directory / "test.csv", index=False)
    data = {"train": "train.csv", "test": "test.csv", "features": FEATURES}
    config = write_config(directory, config_dict(data=data | {"validation_split": 0.25}))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", "--config", str(config), "--out", str(directory / "run")])
    return Trained(directory / "run", code, out.getvalue(), err.getvalue())


@pytest.fixture
def no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip drawing (about a second per PNG on a busy machine) where no test looks at it."""
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda history, out_dir, **_: [])


def test_train_prints_metrics_and_writes_a_complete_run_directory(trained: Trained) -> None:
    assert trained.code == 0 and "error" not in trained.err and "warning" not in trained.err
    assert trained.out.startswith("validation metrics") and "test metrics" in trained.out
    run = trained.run
    names = {p.name for p in run.iterdir()}
    expected = {"model.safetensors", "model.json", "config.yaml", "metrics.json", "history.csv"}
    expected |= {"history_long.parquet", "history_long.csv"}
    assert expected | {"plots", "coverage.csv", "co_observed.csv", "README.md"} == names
    # diagnostics on stderr: the coverage, then a line per epoch (no terminal), then the run
    err = trained.err
    assert err.index("label coverage over") < err.index("epoch 1/2  train/loss ")
    assert err.index("epoch 2/2  train/loss ") < err.index(f"wrote {run}")
    coverage = pd.read_csv(run / "coverage.csv").set_index(["task", "label"])
    assert coverage.loc[("tox", "tox"), "n_observed"] == make_table()["tox"].notna().sum()
    co_observed = pd.read_csv(run / "co_observed.csv", index_col=0)
    assert list(co_observed.index) == ["tox", "scene", "colour", "age"]
    assert (co_observed.to_numpy().diagonal() >= co_observed.to_numpy().max(axis=0)).all()
    assert coverage.loc[("tox", "tox"), "n_observed"] == co_observed.loc["tox", "tox"]
    summary = pd.read_csv(run / "history.csv")
    assert len(summary) == SMALL_TRAINING["epochs"]
    long = pd.read_parquet(run / "history_long.parquet")
    assert list(long.columns) == ["epoch", "split", "task", "label", "metric", "value"]
    assert set(long["epoch"]) == set(range(1, SMALL_TRAINING["epochs"] + 1))
    parts = ["split", "task", "label", "metric"]
    csv = pd.read_csv(run / "history_long.csv")
    csv[parts] = csv[parts].fillna("")  # an absent part is an empty cell
    pd.testing.assert_frame_equal(csv, long.astype(dict.fromkeys(parts, str)), check_dtype=False)
    val_loss = long[(long["split"] == "val") & (long["task"] == "") & (long["metric"] == "loss")]
    assert val_loss["value"].tolist() == pytest.approx(summary["val/loss"].tolist())
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"validation", "test", "undefined"}
    assert set(metrics["test"]) == {"tox", "scene", "colour", "age"}
    assert metrics["test"]["tox"]["n_observed"] == pytest.approx(
        make_table(40, seed=1)["tox"].notna().sum()
    )
    resolved = load_config(run / "config.yaml")
    colour = next(spec for spec in resolved.tasks if spec.name == "colour")
    assert colour.labels == ("blue", "green", "red") and colour.column == "colour"
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert plots == ["loss.png", "summary.png"]  # per-task plots only with plots: all


def test_evaluate_prints_a_table_and_json(
    trained: Trained, capsys: pytest.CaptureFixture[str]
) -> None:
    run = trained.run
    workdir = run.parent
    code, out, _ = run_cli(capsys, "evaluate", run, "--data", workdir / "test.csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["task", "metric", "value"]
    assert any(line.split()[:2] == ["tox", "accuracy"] for line in lines)
    code, out, _ = run_cli(capsys, "evaluate", run, "--data", workdir / "test.csv", "--json")
    assert code == 0
    document = json.loads(out)
    saved = json.loads((run / "metrics.json").read_text())
    assert set(document) == {"data", "undefined"}  # the layout of metrics.json, part "data"
    assert document["data"] == saved["test"]
    assert document["undefined"].get("data", {}) == saved["undefined"].get("test", {})
    metrics = document["data"]
    for task in ("tox", "scene", "colour"):
        for key, value in metrics[task].items():
            if key.split("/")[0] in ("accuracy", "f1_macro", "roc_auc_macro", "roc_auc"):
                assert value is None or 0.0 <= value <= 1.0
            if value is None:
                assert document["undefined"]["data"][task][key]


def test_predict_writes_one_column_per_output(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = trained.run
    workdir = run.parent
    output = tmp_path / "out" / "pred.csv"
    code, out, err = run_cli(
        capsys, "predict", run, "--data", workdir / "test.csv", "--out", output
    )
    assert (code, out, err) == (0, "", f"wrote 40 rows x 12 columns to {output}\n")
    frame = pd.read_csv(output, keep_default_na=False)
    assert list(frame.columns) == [
        "tox.prob",
        "tox.pred",
        "scene.prob.sea",
        "scene.prob.sun",
        "scene.pred.sea",
        "scene.pred.sun",
        "scene.labels",
        "colour.prob.blue",
        "colour.prob.green",
        "colour.prob.red",
        "colour.pred",
        "age.value",
    ]
    assert len(frame) == 40
    assert set(frame["colour.pred"]) <= {"blue", "green", "red"}
    assert [p.name for p in output.parent.iterdir()] == ["pred.csv"]


def test_saved_run_predicts_exactly_like_the_trained_model(workdir: Path, no_plots: None) -> None:
    config = load_config(write_config(workdir, config_dict()))
    run = train_run(config, workdir / "run", progress=False)
    loaded = load_model(workdir / "run")
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(3))
    expected, got = raw_outputs(run.fit.model, x), raw_outputs(loaded, x)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)


def test_the_cli_holds_out_the_rows_fit_would_hold_out(workdir: Path, no_plots: None) -> None:
    from taskmask.api import fit

    config = load_config(write_config(workdir, config_dict()))
    run = train_run(config, workdir / "run", progress=False)
    table = make_table()
    labels = {
        "tox": table["tox"].to_numpy(),
        "scene": table[["sea", "sun"]].to_numpy(),
        "colour": table["colour"].to_numpy(),
        "age": table["age"].to_numpy(),
    }
    direct = fit(
        table[FEATURES],
        labels,
        config.task_list(),
        trunk=config.model.trunk,
        validation_split=0.25,
        **SMALL_TRAINING,
        progress=False,
    )
    pd.testing.assert_frame_equal(
        run.fit.history.drop(columns="seconds"), direct.history.drop(columns="seconds")
    )


def test_quiet_silences_the_progress_bar(
    workdir: Path, capsys: pytest.CaptureFixture[str], no_plots: None
) -> None:
    config = write_config(workdir, config_dict(training=SMALL_TRAINING | {"progress": True}))
    code, _, err = run_cli(capsys, "train", "--config", config, "--out", workdir / "r", "--quiet")
    assert (code, err) == (0, "")


def test_an_existing_run_dir_is_kept_unless_overwrite(
    workdir: Path, capsys: pytest.CaptureFixture[str], no_plots: None
) -> None:
    out = workdir / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    config = write_config(workdir, config_dict())
    code, _, err = run_cli(capsys, "train", "--config", config, "--out", out)
    assert code == 2 and "--overwrite" in err and (out / "keep.txt").exists()
    code, _, _ = run_cli(capsys, "train", "--config", config, "--out", out, "--overwrite")
    assert code == 0 and not (out / "keep.txt").exists() and (out / "model.json").exists()


def test_a_failure_while_writing_leaves_no_run_dir(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("taskmask.app.plots.plot_history", broken)
    config = load_config(write_config(workdir, config_dict()))
    with pytest.raises(RuntimeError, match="disk on fire"):
        train_run(config, workdir / "run", progress=False)
    assert not any(p.name == "run" or p.name.startswith(".run.") for p in workdir.iterdir())


# masking.py builds a pd.Categorical from values outside its categories, which pandas 3
# deprecates with a Pandas4Warning; drop this mark once masking uses Index.get_indexer.


def _case(name: str, spoil: Any, named: str, expected: list[str], *marks: Any) -> Any:
    """How to spoil the setup, which file the message names, what else it names."""
    return pytest.param(spoil, named, expected, id=name, marks=marks)


BAD_INPUT = [
    _case("unknown kind", {"tasks": [{"name": "tox", "kind": "binarry"}]}, "run.yaml", ["kind"]),
    _case("unknown key", {"trainin": {}}, "run.yaml", ["trainin", "unknown key"]),
    _case("bad yaml", "data: [unclosed\n", "run.yaml", ["not valid YAML", "line"]),
    _case(
        "missing column",
        {"tasks": [{"name": "tox", "kind": "binary", "column": "toxx"}]},
        "train.csv",
        ["'toxx'", "task 'tox'", "'tox'"],
    ),
    _case(
        "missing feature",
        {"data": {"train": "train.csv", "features": ["x9"]}},
        "train.csv",
        ["'x9'", "features"],
    ),
    _case(
        "label outside the classes",
        {"tasks": [{"name": "colour", "kind": "multiclass", "labels": ["red", "green"]}]},
        "train.csv",
        ["task 'colour'", "'blue'", "['red', 'green']"],
    ),
    _case(
        "binary label 2",
        lambda f: f.assign(tox=f["tox"].replace(1, 2)),
        "train.csv",
        ["task 'tox'", "value 2", "expected 0, 1 or missing"],
    ),
    _case(
        "nan feature",
        lambda f: f.assign(x1=f["x1"].mask(f.index == 7)),
        "train.csv",
        ["x1", "row 7", "NaN"],
    ),
    _case(
        "text feature",
        lambda f: f.assign(x2=f["x2"].astype(object).where(f.index != 3, "oops")),
        "train.csv",
        ["'x2'", "'oops'", "row 3"],
    ),
    _case(
        "no observed label",
        lambda f: f.assign(age=np.nan),
        "train.csv",
        ["['age']", "no observed"],
    ),
    _case(
        "unreadable file",
        {"data": {"train": "broken.parquet", "features": FEATURES}},
        "broken.parquet",
        ["not a readable"],
    ),
    _case(
        "missing file",
        {"data": {"train": "gone.csv", "features": FEATURES}},
        "gone.csv",
        ["not found"],
    ),
    _case(
        "bad test label",
        {"data": {"train": "train.csv", "test": "bad_test.csv", "features": FEATURES}},
        "bad_test.csv",
        ["'purple'"],
    ),
    _case(
        "shape mismatch",
        {
            "data": {"train": "arrays.npz", "features": "X"},
            "tasks": [{"name": "y", "kind": "binary"}],
        },
        "arrays.npz",
        ["'y'", "shape (5,)", "expected 6 rows"],
    ),
    _case(
        "feature width",
        {
            "data": {"train": "wide.npz", "test": "narrow.npz", "features": "X"},
            "tasks": [{"name": "y", "kind": "binary"}],
        },
        "narrow.npz",
        ["(N, 1)", "expected (N, 2)"],
    ),
]


@pytest.mark.parametrize(("spoil", "named", "expected"), BAD_INPUT)
def test_bad_input_exits_2_naming_the_culprit_before_training(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    spoil: Any,
    named: str,
    expected: list[str],
) -> None:
    (workdir / "broken.parquet").write_bytes(b"PAR1 not really")
    make_table(10).assign(colour="purple").to_csv(workdir / "bad_test.csv", index=False)
    np.savez(workdir / "arrays.npz", X=np.zeros((6, 2)), y=np.zeros(5))
    np.savez(workdir / "wide.npz", X=np.zeros((6, 2)), y=np.zeros(6))
    np.savez(workdir / "narrow.npz", X=np.zeros((6, 1)), y=np.zeros(6))
    if callable(spoil):
        spoil(make_table()).to_csv(workdir / "train.csv", index=False)
        spoil = {}
    config = write_config(workdir, spoil if isinstance(spoil, str) else config_dict(**spoil))
    fits: list[Any] = []
    monkeypatch.setattr(runs, "fit", lambda *a, **k: fits.append(a) or pytest.fail("trained"))
    code, out, err = run_cli(capsys, "train", "--config", config, "--out", workdir / "run")
    assert code == 2 and out == "" and fits == []
    assert err.startswith("taskmask train: error: ") and "Traceback" not in err
    assert str(workdir / named) in err
    for part in expected:
        assert part in err
    assert not (workdir / "run").exists()
    assert not any(p.name.startswith(".run") for p in workdir.iterdir())


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["evaluate", "{run}", "--data", "{dir}/nope.csv"], "nope.csv: file not found"),
        (["evaluate", "{dir}", "--data", "{dir}/test.csv"], "model.json: not found"),
        (["evaluate", "{run}", "--data", "{dir}/bad.csv"], "'colour'"),
        (["predict", "{run}", "--data", "{dir}/narrow.csv", "--out", "{dir}/p.csv"], "'x2'"),
    ],
)
def test_evaluate_and_predict_bad_input_exit_2(
    trained: Trained,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    expected: str,
) -> None:
    make_table(10).drop(columns="colour").to_csv(tmp_path / "bad.csv", index=False)
    make_table(10).drop(columns="x2").to_csv(tmp_path / "narrow.csv", index=False)
    make_table(10).to_csv(tmp_path / "test.csv", index=False)
    argv = [part.format(run=trained.run, dir=tmp_path) for part in command]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and expected in err
    assert not (tmp_path / "p.csv").exists()


def test_usage_errors_return_2_and_help_returns_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["train", "--config", "x.yaml"]) == 2
    assert main(["demo", "--out", "d", "--epochs", "0"]) == 2
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out


def test_demo_calls_the_demo_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import taskmask.app.demo

    calls: list[dict[str, Any]] = []

    def fake_run(out_dir: Path, **options: Any) -> dict[str, Any]:
        calls.append({"out_dir": out_dir, **options})
        return {"variants": {}}

    monkeypatch.setattr(taskmask.app.demo, "run", fake_run)
    monkeypatch.setattr(taskmask.app.demo, "format_table", lambda results: "TABLE")
    code, out, _ = run_cli(capsys, "demo", "--out", tmp_path, "--epochs", "3", "--quiet")
    assert code == 0 and "TABLE" in out
    assert calls == [{"out_dir": tmp_path, "epochs": 3, "seed": 0, "progress": False}]


def test_python_dash_m_runs_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["taskmask", "--help"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("taskmask", run_name="__main__")
    assert info.value.code == 0
    assert "evaluate" in capsys.readouterr().out


def test_the_example_config_trains_on_the_example_generator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_plots: None
) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "configs"
    make = runpy.run_path(str(examples / "make_quickstart_data.py"))["make_table"]
    make(150).to_csv(tmp_path / "quickstart.csv", index=False)
    raw = yaml.safe_load((examples / "quickstart.yaml").read_text())
    raw["training"] |= {"epochs": 1}
    config = write_config(tmp_path, raw)
    code, out, err = run_cli(capsys, "train", "-q", "--config", config, "--out", tmp_path / "run")
    assert "colour" in out
    assert (code, err) == (0, "")
    assert {"toxic", "scene", "colour", "age"} <= set(
        json.loads((tmp_path / "run" / "metrics.json").read_text())["validation"]
    )
