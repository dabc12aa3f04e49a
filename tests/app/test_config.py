"""Run configs: validation before training, messages that name the file and the YAML path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from taskmask.app.config import RunConfig, load_config
from taskmask.errors import TaskmaskError
from taskmask.tasks import Task

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"


def _config(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "data": {"train": "train.csv", "features": ["x0", "x1"]},
        "tasks": [
            {"name": "toxic", "kind": "binary"},
            {"name": "scene", "kind": "multilabel", "columns": ["sea", "sunset"]},
        ],
    }
    raw.update(changes)
    return raw


def _write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def _error(tmp_path: Path, raw: Any) -> str:
    path = _write(tmp_path, raw)
    with pytest.raises(TaskmaskError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_example_config_loads_with_paths_relative_to_its_folder() -> None:
    config = load_config(EXAMPLES / "quickstart.yaml")
    assert config.data.train == (EXAMPLES / "quickstart.csv").resolve()
    assert {spec.name for spec in config.tasks} == {"toxic", "scene", "colour", "age"}


def test_defaults_column_labels_and_split(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, _config()))
    toxic, scene = config.tasks
    assert toxic.source == "toxic"
    assert scene.source == ("sea", "sunset") and scene.labels == ("sea", "sunset")
    assert config.data.validation_split == 0.2
    assert config.data.train == tmp_path / "train.csv"
    assert [type(t) for t in config.task_list()] == [Task, Task]
    with_file = _config(data={"train": "a.csv", "validation": "b.csv", "features": "X"})
    config = load_config(_write(tmp_path, with_file))
    assert config.data.validation_split == 0.0 and config.data.features == ("X",)


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, _config()))
    tasks = [Task(name="toxic", kind="binary"), Task(name="scene", kind="multilabel")]
    resolved = config.resolved(tasks)
    assert resolved.tasks[0].column == "toxic"
    again = load_config(_write(tmp_path, resolved.to_yaml()))
    assert again == resolved


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"tasks": [{"name": "toxic", "kind": "binarry"}]},
            ["tasks[0] (task 'toxic').kind", "'binarry'", "'multilabel'"],
        ),
        ({"trainng": {}}, ["trainng: unknown key", "did you mean 'training'"]),
        (
            {"training": {"lr_rate": 0.1}},
            ["training.lr_rate: unknown key", "allowed keys: epochs", " lr,"],
        ),
        (
            {"tasks": [{"name": "t", "kind": "binary", "colum": "c"}]},
            ["tasks[0] (task 't').colum: unknown key", "did you mean 'column'"],
        ),
        (
            {"model": {"trunk": {"hidden": [8, 0]}}},
            ["model.trunk.hidden[1]", "greater than or equal to 1"],
        ),
        ({"training": {"epochs": 0}}, ["training.epochs", "greater than or equal to 1"]),
        ({"training": {"validation_split": 0.1}}, ["set data.validation_split"]),
        ({"training": {"weighting": "magic"}}, ["unknown training.weighting 'magic'", "static"]),
        ({"tasks": []}, ["tasks: ", "at least 1 item"]),
        (
            {"tasks": [{"name": "t", "kind": "binary"}, {"name": "t", "kind": "regression"}]},
            ["repeated: ['t']"],
        ),
        (
            {"tasks": [{"name": "t", "kind": "binary", "column": "a", "columns": ["b"]}]},
            ["task 't': give column or columns, not both"],
        ),
        (
            {"tasks": [{"name": "t", "kind": "binary", "columns": ["a", "b"]}]},
            ["a binary task reads one column"],
        ),
        (
            {
                "tasks": [
                    {"name": "t", "kind": "multilabel", "columns": ["a"], "labels": ["p", "q"]}
                ]
            },
            ["1 columns for 2 outputs"],
        ),
        ({"tasks": [{"name": "x0", "kind": "binary"}]}, ["columns ['x0'] are also features"]),
        (
            {"tasks": [{"name": "t", "kind": "binary", "pos_weight": "heavy"}]},
            ["tasks[0] (task 't').pos_weight: ", "'balanced'", " or "],
        ),
        ({"tasks": [{"name": "t", "kind": "binary", "column": True}]}, ["quote it"]),
        (
            {
                "tune_thresholds": True,
                "data": {"train": "a.csv", "features": ["x"], "validation_split": 0.0},
            },
            ["tune_thresholds needs validation data"],
        ),
        (
            {
                "data": {
                    "train": "a.csv",
                    "validation": "b.csv",
                    "validation_split": 0.1,
                    "features": ["x"],
                }
            },
            ["data: give a validation file or a validation_split, not both"],
        ),
        (
            {"data": {"train": "a.csv"}},
            ["data: give features (columns or NPZ arrays), smiles, or both"],
        ),
    ],
)
def test_invalid_config_names_file_path_and_expectation(
    tmp_path: Path, change: dict[str, Any], expected: list[str]
) -> None:
    message = _error(tmp_path, _config(**change))
    for part in expected:
        assert part in message


def test_every_problem_is_reported_once_per_line(tmp_path: Path) -> None:
    message = _error(tmp_path, _config(training={"epochs": 0, "lr": -1}, extra=1))
    lines = message.splitlines()
    assert len(lines) == 4
    assert any(line.strip().startswith("training.lr:") for line in lines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data: {train: a.csv\ntasks: []\n", "not valid YAML: line"),
        ("data:\n  train: a.csv\n   bad: indent\n", "not valid YAML: line 3"),
        ("- just\n- a list\n", "expected a mapping"),
        ("", "expected a mapping"),
    ],
)
def test_bad_yaml_names_the_file_and_the_line(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(tmp_path, text)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(TaskmaskError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_schema_has_the_documented_sections() -> None:
    assert list(RunConfig.model_fields) == [
        "data",
        "tasks",
        "model",
        "training",
        "standardize",
        "tune_thresholds",
        "plots",
        "search",
        "plugins",
        "trackers",
    ]
