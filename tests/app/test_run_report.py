"""What a run directory says: metrics.json (numbers or null, reasons apart, no repeated keys),
the config with only the settings that apply, and the model card README.md."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_cli import config_dict, make_table, run_cli, write_config

from taskmask.app.applicable import applicable
from taskmask.app.config import load_config
from taskmask.app.run_report import compact, metrics_document
from taskmask.functional import Undefined


def test_a_one_output_task_has_each_metric_once() -> None:
    binary = {
        "accuracy/tox": 0.9,
        "accuracy_macro": 0.9,
        "accuracy_macro_n_labels": 1.0,
        "n_observed/tox": 25.0,
        "accuracy": 0.9,
        "n_observed": 25.0,
    }
    assert compact(binary) == {"accuracy": 0.9, "n_observed": 25.0}


def test_several_labels_keep_their_own_and_macro_keys() -> None:
    multilabel = {
        "f1/sea": 0.5,
        "f1/sun": 0.7,
        "f1_macro": 0.6,
        "f1_macro_n_labels": 2.0,
        "n_observed/sea": 3.0,
        "n_observed/sun": 4.0,
    }
    assert compact(multilabel) == multilabel
    multiclass = {"accuracy": 0.3, "f1_macro": 0.1, "f1_macro_n_labels": 3.0, "f1/blue": 0.0}
    multiclass |= {"f1/red": 0.2}
    assert compact(multiclass) == multiclass


def test_the_document_holds_numbers_or_null_and_the_reasons_apart() -> None:
    parts = {
        "validation": {
            "scene": {"precision/sea": Undefined("nothing predicted positive"), "f1/sea": 0.0}
            | {"f1/sun": 0.5, "precision/sun": 1.0},
            "tox": {"accuracy": 1.0},
        },
        "test": {"tox": {"accuracy": 0.5}},
    }
    document = metrics_document(parts)
    assert document["validation"]["scene"]["precision/sea"] is None
    assert document["undefined"] == {
        "validation": {"scene": {"precision/sea": "nothing predicted positive"}}
    }
    flat = pd.json_normalize(json.loads(json.dumps(document))["validation"])
    assert flat.astype(float).shape == (1, 5)


def _binary_and_regression(**training: object) -> dict[str, object]:
    raw = config_dict()
    raw["tasks"] = [
        {"name": "tox", "kind": "binary"},
        {"name": "age", "kind": "regression", "loss": "huber", "huber_delta": 2.0},
    ]
    raw["training"] = {**raw["training"], **training}  # type: ignore[dict-item]
    return raw


def test_the_resolved_config_shows_what_applies_and_loads_back(tmp_path: Path) -> None:
    make_table().to_csv(tmp_path / "train.csv", index=False)
    config = load_config(write_config(tmp_path, _binary_and_regression(optimizer="sgd")))
    shown = yaml.safe_load(config.to_yaml())
    tox, age = shown["tasks"]
    assert {"loss", "huber_delta", "missing_labels", "labels", "sentinel"}.isdisjoint(tox)
    assert tox["threshold"] == 0.5
    assert (age["loss"], age["huber_delta"]) == ("huber", 2.0) and "threshold" not in age
    assert "validation_split" not in shown["training"] and shown["training"]["momentum"] == 0.9
    assert "test" not in shown["data"] and "plugins" not in shown
    again = load_config(write_config(tmp_path, config.to_yaml()))
    assert again.model_dump() == config.model_dump()
    adam = load_config(write_config(tmp_path, _binary_and_regression(momentum=0.5)))
    assert yaml.safe_load(adam.to_yaml())["training"]["momentum"] == 0.5  # set: kept
    plain = load_config(write_config(tmp_path, _binary_and_regression()))
    assert "momentum" not in applicable(plain.model_dump(mode="json"))["training"]


def test_the_model_card_says_what_was_trained_and_how_well(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda history, out_dir, **_: [])
    make_table().to_csv(tmp_path / "train.csv", index=False)
    training = {"epochs": 30, "lr": 0.5, "early_stopping": {"patience": 1, "min_delta": 0.3}}
    path = write_config(tmp_path, config_dict(training=config_dict()["training"] | training))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "-q", "--config", path, "--out", out)
    assert code == 0, err
    card = (out / "README.md").read_text()
    history = pd.read_csv(out / "history.csv")
    assert f"Trained {len(history)} epochs, stopped early (of 30)" in card
    assert "the weights are those of epoch " in card
    digest = hashlib.sha256((tmp_path / "train.csv").read_bytes()).hexdigest()
    assert f"| train | `{tmp_path / 'train.csv'}` | `{digest}` |" in card
    assert "| scene | multilabel | sea, sun | 0.5, 0.5 | 1 |" in card
    assert "Validation: 25% of the training rows (split seed 0)." in card
    assert f"taskmask train -q --config {path} --out {out}" in card
    metrics = json.loads((out / "metrics.json").read_text())
    accuracy = metrics["validation"]["tox"]["accuracy"]
    assert f"| validation | tox | accuracy | {accuracy:.4g} |" in card
    assert "torch " in card and "Python 3." in card


def _wide_history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": [1.0, 2.0],
            "lr": [0.1, 0.05],
            "train/loss": [1.0, 0.5],
            "val/loss": [1.2, 0.7],
            "train/tox/loss": [0.3, 0.2],
            "val/tox/roc_auc": [0.6, float("nan")],
            "val/scene/roc_auc/sea": [0.7, 0.8],
            "val/scene/roc_auc_macro": [0.7, 0.8],
            "val/scene/loss": [0.9, 0.8],
            "val/mean/roc_auc": [0.65, 0.8],
            "weight/tox": [1.0, 1.0],
            "cosine/tox/scene": [0.1, -0.2],
        }
    )


def test_the_long_history_splits_every_key_and_reads_back_as_the_wide_one() -> None:
    from taskmask.app.run_report import LONG_COLUMNS, key_parts, long_history, wide_history

    history = _wide_history()
    long = long_history(history)
    assert tuple(long.columns) == LONG_COLUMNS and len(long) == 2 * (history.shape[1] - 1)
    assert key_parts("val/scene/roc_auc/sea") == ("val", "scene", "sea", "roc_auc")
    assert key_parts("val/loss") == ("val", "", "", "loss")
    assert key_parts("cosine/tox/scene") == ("", "tox", "scene", "cosine")
    assert key_parts("lr") == ("", "", "", "lr")
    row = long[(long["epoch"] == 2) & (long["label"] == "sea")]
    assert row[["split", "task", "metric"]].values.tolist() == [["val", "scene", "roc_auc"]]
    assert row["value"].tolist() == [0.8]
    pd.testing.assert_frame_equal(wide_history(long), history)


def test_the_summary_history_has_totals_means_and_one_headline_metric_per_task() -> None:
    from taskmask.app.run_report import summary_history

    summary = summary_history(_wide_history())
    assert list(summary.columns) == [
        "epoch",
        "lr",
        "train/loss",
        "val/loss",
        "val/mean/roc_auc",
        "val/tox/roc_auc",  # its headline metric; train has none, so no train column
        "val/scene/roc_auc_macro",
    ]
