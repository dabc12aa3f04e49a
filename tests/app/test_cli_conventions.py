"""Command-line conventions: ``--version``, ``-q`` / ``-v``, one ``--out`` spelling with the
format taken from the suffix (``-`` for stdout), ``--set`` overrides validated like the file,
diagnostics on stderr, documented exit codes, and ``plugins:`` that register user kinds."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_cli import Trained, config_dict, make_table, run_cli, trained, write_config

from taskmask._version import __version__
from taskmask.app.cli import EXIT_CODES, build_parser, main
from taskmask.app.config import load_config
from taskmask.app.overrides import apply_overrides
from taskmask.errors import TaskmaskError
from taskmask.tasks import unregister_kind

__all__ = ["trained"]  # the module-scoped fixture, shared with test_cli


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "--version") == (0, f"taskmask {__version__}\n", "")


def test_help_documents_the_exit_codes() -> None:
    for parser in (build_parser(), build_parser()._subparsers._group_actions[0].choices["train"]):  # type: ignore[union-attr]
        text = parser.format_help()
        assert "exit codes:" in text
        for code, what in EXIT_CODES.items():
            assert f"  {code}  {what}" in text


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_predict_writes_the_format_its_suffix_names(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    out = tmp_path / f"pred{suffix}"
    data = trained.run.parent / "test.csv"
    code, stdout, _ = run_cli(capsys, "predict", trained.run, "--data", data, "--out", out)
    assert (code, stdout) == (0, "")
    reference = tmp_path / "reference.csv"
    assert run_cli(capsys, "predict", trained.run, "--data", data, "--out", reference)[0] == 0
    expected = pd.read_csv(reference, keep_default_na=False)
    if suffix == ".csv":
        got = pd.read_csv(out, keep_default_na=False)
    elif suffix == ".parquet":
        assert out.read_bytes()[:4] == b"PAR1"
        got = pd.read_parquet(out)
    else:
        rows = json.loads(out.read_text())
        assert isinstance(rows, list) and len(rows) == 40 and set(rows[0]) == set(expected)
        got = pd.DataFrame(rows)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_predict_to_stdout_keeps_diagnostics_on_stderr(
    trained: Trained, capsys: pytest.CaptureFixture[str]
) -> None:
    data = trained.run.parent / "test.csv"
    code, out, err = run_cli(capsys, "predict", trained.run, "--data", data, "--out", "-")
    assert code == 0 and not Path("-").exists()
    frame = pd.read_csv(io.StringIO(out), keep_default_na=False)
    assert frame.shape == (40, 12) and frame.columns[0] == "tox.prob"
    assert err == "wrote 40 rows x 12 columns to stdout\n"
    code, out, err = run_cli(capsys, "predict", "-q", trained.run, "--data", data, "--out", "-")
    assert code == 0 and err == "" and len(out.splitlines()) == 41


def test_output_is_a_deprecated_alias_of_out(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = trained.run.parent / "test.csv", tmp_path / "p.csv"
    code, _, err = run_cli(capsys, "predict", trained.run, "--data", data, "--output", out)
    assert code == 0 and out.is_file()
    assert err.splitlines()[0] == "warning: --output is deprecated and will be removed; use --out"
    code, _, err = run_cli(
        capsys, "predict", trained.run, "--data", data, "--out", out, "--output", out
    )
    assert code == 2 and "give --out FILE only" in err


def test_an_unknown_suffix_is_refused_before_any_work(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.xlsx"
    code, stdout, err = run_cli(capsys, "predict", trained.run, "--data", "nope.csv", "--out", out)
    assert (code, stdout) == (2, "")
    assert (
        f"{out}: unknown output format '.xlsx'; expected a file ending in .csv, .parquet, " in err
    )
    code, _, err = run_cli(capsys, "predict", trained.run, "--data", "nope.csv")
    assert code == 2 and "give --out FILE (.csv, .parquet, .json), or --out - for stdout" in err


def test_quiet_and_verbose_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", "-q", "-v", "--config", "x.yaml")
    assert code == 2 and "not allowed with argument" in err


def test_set_overrides_are_yaml_values_applied_before_validation(workdir_config: Path) -> None:
    config = load_config(
        workdir_config,
        overrides=["training.lr=0.05", "model.trunk.hidden=[4, 4]", "tasks.age.weight=0.5"],
    )
    assert config.training.lr == 0.05 and config.model.trunk.hidden == (4, 4)  # type: ignore[union-attr]
    assert next(t for t in config.tasks if t.name == "age").weight == 0.5
    scheduled = load_config(workdir_config, overrides=["training.scheduler={type: cosine}"])
    assert scheduled.training.scheduler is not None
    assert scheduled.training.scheduler.type == "cosine"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.lrr=0.01", "training.lrr: unknown key; allowed keys: "),
        ("training.lr=-1", "training.lr: Input should be greater than 0 (got -1)"),
        ("training.lr", "--set 'training.lr': expected KEY=VALUE, e.g. training.lr=0.01"),
        ("tasks.nope.weight=2", "--set tasks.nope.weight: no task named 'nope'"),
        ("training.lr=[1", "--set training.lr: the value '[1' is not YAML"),
    ],
)
def test_bad_overrides_name_the_key(
    workdir_config: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    out = workdir_config.parent / "run"
    code, stdout, err = run_cli(
        capsys, "train", "--config", workdir_config, "--out", out, "--set", override
    )
    assert (code, stdout) == (2, "") and message in err, err
    assert not out.exists()


def test_set_trains_with_the_override(
    workdir_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda history, out_dir, **_: [])
    out = workdir_config.parent / "run"
    argv = ["train", "--config", workdir_config, "--out", out, "--set", "training.epochs=3"]
    code, _, err = run_cli(capsys, *argv, "--set", "training.log_every=2")
    assert code == 0, err
    assert [line.split()[1] for line in err.splitlines() if line.startswith("epoch ")] == [
        "2/3",
        "3/3",
    ]
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["epochs"] == 3
    assert len(pd.read_csv(out / "history.csv")) == 3


def test_verbose_adds_debug_lines_and_quiet_keeps_stderr_empty(
    workdir_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda history, out_dir, **_: [])
    plugin = workdir_config.parent / "quiet_plugin.py"
    plugin.write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(plugin.parent))
    raw = yaml.safe_load(workdir_config.read_text()) | {"plugins": ["quiet_plugin"]}
    write_config(workdir_config.parent, raw)
    out = workdir_config.parent / "run"
    code, _, err = run_cli(capsys, "train", "-v", "--config", workdir_config, "--out", out)
    assert code == 0 and "imported plugin quiet_plugin" in err
    code, stdout, err = run_cli(
        capsys, "train", "-q", "--overwrite", "--config", workdir_config, "--out", out
    )
    assert (code, err) == (0, "") and stdout.startswith("validation metrics")


@pytest.fixture
def workdir_config(tmp_path: Path) -> Path:
    make_table().to_csv(tmp_path / "train.csv", index=False)
    return write_config(tmp_path, config_dict())


KIND_PLUGIN = '''
"""A user kind, registered on import: a binary task with its own loss and metric."""
import numpy as np
import torch

import taskmask
from taskmask import LossTerm, TaskKindSpec


def loss(input, target, observed):
    filled = torch.where(observed, target, 0.0)
    per = torch.nn.functional.binary_cross_entropy_with_logits(input, filled, reduction="none")
    per = torch.where(observed, per, 0.0)
    return LossTerm(per.sum(), observed.sum().to(per.dtype))


def metrics(preds, target, observed):
    seen = observed[:, 0]
    return {"hit_rate": float(np.mean((preds[seen, 0] > 0) == (target[seen, 0] == 1)))}


taskmask.register_kind(
    "plugin_binary", TaskKindSpec(loss=loss, metrics=metrics, summary="hit_rate"), replace=True
)
'''


def test_plugins_register_user_kinds_for_train_and_predict(
    workdir_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda history, out_dir, **_: [])
    directory = workdir_config.parent
    (directory / "my_kinds_plugin.py").write_text(KIND_PLUGIN)
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.delitem(sys.modules, "my_kinds_plugin", raising=False)
    raw = config_dict(plugins=["my_kinds_plugin"])
    raw["tasks"][0]["kind"] = "plugin_binary"
    write_config(directory, raw)
    out = directory / "run"
    try:
        code, stdout, err = run_cli(capsys, "train", "-q", "--config", workdir_config, "--out", out)
        assert code == 0, err
        assert "hit_rate" in stdout
        code, stdout, err = run_cli(
            capsys, "predict", "-q", out, "--data", directory / "train.csv", "--out", "-"
        )
        assert code == 0, err
        assert stdout.splitlines()[0].startswith("tox.output,")
    finally:
        unregister_kind("plugin_binary")


def test_a_plugin_that_cannot_be_imported_is_named(tmp_path: Path) -> None:
    make_table().to_csv(tmp_path / "train.csv", index=False)
    path = write_config(tmp_path, config_dict(plugins=["no_such_plugin_module"]))
    with pytest.raises(TaskmaskError, match=r"run.yaml: plugins: cannot import 'no_such_plugin_"):
        load_config(path)
    path = write_config(tmp_path, config_dict(plugins="one_name"))
    with pytest.raises(TaskmaskError, match="plugins: expected a list of module names"):
        load_config(path)


def test_overrides_leave_the_raw_config_alone() -> None:
    raw = {"training": {"lr": 0.1}}
    assert apply_overrides(raw, ["training.lr=0.2"]) == {"training": {"lr": 0.2}}
    assert raw == {"training": {"lr": 0.1}}


def test_every_file_of_a_run_directory_is_documented(trained: Trained) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "run_directory.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", page, flags=re.MULTILINE))
    for path in trained.run.rglob("*"):
        if path.is_file():
            name = path.relative_to(trained.run).as_posix()
            generic = re.sub(r"^plots/task_.*\.png$", "plots/task_TASK.png", name)
            assert generic in documented, name


def test_resume_takes_set_for_the_settings_that_may_change(
    workdir_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that failed once trained (its checkpoint is left), resumed for one epoch more."""

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("disk on fire")

    out = workdir_config.parent / "run"
    with monkeypatch.context() as patch:
        patch.setattr("taskmask.app.plots.plot_history", broken)
        with pytest.raises(RuntimeError, match="disk on fire"):
            main(["train", "-q", "--config", str(workdir_config), "--out", str(out)])
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda history, out_dir, **_: [])
    code, _, err = run_cli(capsys, "train", "--resume", out, "--set", "training.epochs=3")
    assert code == 0, err
    assert "epoch 2 of 3 done; resuming" in err and "epoch 3/3  train/loss" in err
    assert len(pd.read_csv(out / "history.csv")) == 3
    code, _, err = run_cli(capsys, "train", "--resume", out, "--set", "training.lr=1")
    assert code == 2 and "no interrupted run to resume (it has finished)" in err
