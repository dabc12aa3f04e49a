"""Property: whatever small CSV and config a user writes (random column names, types, blanks,
NaN, duplicates, ragged rows), ``taskmask train`` succeeds or exits 2 with one message that
names the data file or the config; it never raises."""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from taskmask.app.cli import main

NAMES = ("a", "b", "c", "y", "z", "a b", "ä")
GOOD_HEADER = ["a", "b", "y", "z"]
CELLS = st.one_of(
    st.sampled_from(["0", "1", "1", "0", "2", "0.5", "-1"]),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.sampled_from(["", "", "NaN", "nan", "NA", "x", "1e308", '"1,2"', "true"]),
)


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    header = draw(
        st.one_of(st.just(GOOD_HEADER), st.lists(st.sampled_from(NAMES), min_size=1, max_size=5))
    )
    n_rows = draw(st.sampled_from([0, 1, 2, 5, 12, 12, 12]))
    ragged = draw(st.sampled_from([False, False, True]))
    rows = []
    for _ in range(n_rows):
        width = len(header) + (draw(st.sampled_from([0, 0, -1, 1])) if ragged else 0)
        rows.append(",".join(draw(CELLS) for _ in range(max(width, 0))))
    return "\n".join([",".join(header), *rows]) + "\n"


TASKS = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["y", "y", "z", "u"]),
        "kind": st.sampled_from(["binary", "multiclass", "regression", "regression", "bogus"]),
    },
    optional={
        "column": st.sampled_from(NAMES),
        "threshold": st.sampled_from([0.5, 1.5, math.nan, 0.2]),
        "weight": st.sampled_from([1.0, -1.0, 0.0]),
        "labels": st.lists(st.sampled_from(["p", "q", "r"]), max_size=3),
    },
)


@st.composite
def configs(draw: st.DrawFn) -> str:
    features = st.lists(st.sampled_from(NAMES), max_size=3)
    raw: dict[str, Any] = {
        "data": {
            "train": "data.csv",
            "features": draw(st.one_of(st.just(["a", "b"]), features)),
            "validation_split": draw(st.sampled_from([0.0, 0.25, 0.5])),
        },
        "tasks": draw(st.lists(TASKS, min_size=1, max_size=2)),
        "model": {"trunk": {"hidden": [4]}},
        "training": {"epochs": 1, "batch_size": 8, "seed": 0},
    }
    text = yaml.safe_dump(raw, allow_unicode=True)
    if draw(st.sampled_from([False, False, False, True])):
        text += "tasks: []\n"  # a key given twice
    return text


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda *args, **kwargs: [])


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=csv_texts(), config=configs())
def test_train_succeeds_or_exits_2_naming_the_file(data: str, config: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        (directory / "data.csv").write_text(data, encoding="utf-8")
        (directory / "run.yaml").write_text(config, encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        argv = ["train", "--config", str(directory / "run.yaml"), "--out", str(directory / "r")]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*argv, "--quiet"])
        message = err.getvalue()
        event("trained" if code == 0 else "data file" if "data.csv:" in message else "config")
        if code == 0:
            assert (directory / "r" / "model.json").is_file()
            return
        assert code == 2 and message.startswith("taskmask train: error: "), message
        assert message.count("taskmask train: error: ") == 1 and "Traceback" not in message
        assert str(directory / "data.csv") in message or str(directory / "run.yaml") in message
        names = {p.name for p in directory.iterdir()}
        assert names == {"data.csv", "run.yaml"}, names  # nothing half-written, nothing stray
