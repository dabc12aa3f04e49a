"""Reading CSV / Parquet / NPZ files: features, raw labels, missing cells, errors naming files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from taskmask.data.tables import read_dataset, read_table
from taskmask.errors import TaskmaskError
from taskmask.tasks import Task, encode_labels

FEATURES = np.array([[0.5, 1.0], [1.5, -2.0], [2.5, 3.0]])
FLAGS = np.array([1.0, np.nan, 0.0])
COLOURS = np.array(["red", "", "NA"], dtype=object)  # "" is missing, "NA" is a class name


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"x0": FEATURES[:, 0], "x1": FEATURES[:, 1], "flag": FLAGS, "colour": COLOURS}
    )


def _write(tmp_path: Path, suffix: str) -> Path:
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        _frame().to_csv(path, index=False)
    elif suffix == ".parquet":
        _frame().replace({"colour": {"": None}}).to_parquet(path)
    else:
        np.savez(path, x0=FEATURES[:, 0], x1=FEATURES[:, 1], flag=FLAGS, colour=COLOURS.astype(str))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npz"])
def test_reads_features_and_raw_labels_alike_from_every_format(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path, suffix)
    data = read_dataset(
        path, feature_names=["x1", "x0"], targets={"flag": "flag", "colour": "colour"}
    )
    torch.testing.assert_close(
        data.inputs, torch.tensor(FEATURES[:, ::-1].copy(), dtype=torch.float32)
    )
    assert data.feature_names == ["x1", "x0"]
    flags = encode_labels(Task(name="flag", kind="binary"), data.labels["flag"])
    assert flags.observed[:, 0].tolist() == [True, False, True]
    colour = Task(name="colour", kind="multiclass", labels=("NA", "red"))
    encoded = encode_labels(colour, data.labels["colour"])
    assert encoded.observed.tolist() == [True, False, True]
    assert encoded.target.tolist() == [1, 0, 0]


def test_csv_empty_cells_are_nan_and_class_names_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,flag,colour,score\n1,1,red,0.5\n2,,,\n3,0,NA,nan\n4,-1,None,NaN\n")
    table = read_table(path)
    assert np.isnan(table.columns["flag"][1])
    assert table.columns["flag"].dtype.kind == "f"
    assert list(table.columns["colour"][[0, 2, 3]]) == ["red", "NA", "None"]
    assert pd.isna(table.columns["colour"][1])
    assert np.isnan(table.columns["score"][[1, 2, 3]]).all()


def test_several_columns_stack_and_a_2d_npz_array_gives_several_features(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.npz"
    y = np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, -1.0]])
    np.savez(path, X=FEATURES, y=y, a=y[:, 0], b=y[:, 1])
    data = read_dataset(path, feature_names="X", targets={"whole": "y", "stacked": ["b", "a"]})
    assert data.feature_names == ["X_0", "X_1"]
    assert data.inputs.shape == (3, 2)
    np.testing.assert_array_equal(data.labels["whole"], y)
    np.testing.assert_array_equal(data.labels["stacked"], y[:, ::-1])


def test_dataset_take_selects_rows_of_inputs_and_labels(tmp_path: Path) -> None:
    data = read_dataset(_write(tmp_path, ".csv"), feature_names=["x0"], targets={"f": "flag"})
    part = data.take(np.array([2, 0]))
    assert part.inputs[:, 0].tolist() == [2.5, 0.5]
    assert part.labels["f"].tolist() == [0.0, 1.0]


def test_missing_column_names_the_file_the_task_and_what_is_there(tmp_path: Path) -> None:
    path = _write(tmp_path, ".csv")
    with pytest.raises(TaskmaskError) as info:
        read_dataset(path, feature_names=["x0"], targets={"flags": "flagg"})
    message = str(info.value)
    assert str(path) in message and "'flagg'" in message and "task 'flags'" in message
    assert "'colour'" in message and "did you mean 'flag'" in message


@pytest.mark.parametrize(
    ("content", "column", "expected"),
    [
        ("x0,x1\n1,2\n3,abc\n", "'x1'", "'abc' at row 1"),
        ("x0,x1\n1,2\n3,\n", "x1", "NaN"),
        ("x0,x1\n1,2\n3,inf\n", "x1", "infinite"),
    ],
)
def test_text_or_nan_in_a_feature_column_names_file_and_column(
    tmp_path: Path, content: str, column: str, expected: str
) -> None:
    path = tmp_path / "f.csv"
    path.write_text(content)
    with pytest.raises(TaskmaskError) as info:
        read_dataset(path, feature_names=["x0", "x1"], targets={})
    message = str(info.value)
    assert str(path) in message and column in message and expected in message


def test_npz_arrays_of_different_lengths_are_a_shape_error(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=FEATURES, y=np.zeros(2))
    with pytest.raises(TaskmaskError, match=r"'y' has shape \(2,\); expected 3 rows"):
        read_dataset(path, feature_names="X", targets={"t": "y"})


def test_one_3d_npz_feature_array_is_kept_whole(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(12.0).reshape(3, 2, 2), Z=np.zeros((3, 2, 2)))
    part = read_dataset(path, feature_names="X", targets={})
    assert part.inputs.shape == (3, 2, 2) and part.feature_names is None
    assert part.inputs[2, 1, 1].item() == 11.0


def test_a_3d_npz_array_beside_other_features_is_a_shape_error(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((3, 2, 2)), Z=np.zeros((3, 2, 2)))
    with pytest.raises(TaskmaskError, match=r"'X' has shape \(3, 2, 2\)"):
        read_dataset(path, feature_names=["X", "Z"], targets={})


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npz"])
def test_a_corrupt_file_is_an_error_naming_it(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"\x00\xff\x13garbage" if suffix != ".csv" else b"\xff\xfe\x00\x00a,b\n")
    with pytest.raises(TaskmaskError, match="not a readable") as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_npz_with_object_arrays_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(TaskmaskError, match="not a readable NPZ"):
        read_table(path)


def test_a_plain_npy_file_named_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.npz"
    with path.open("wb") as handle:
        np.save(handle, FEATURES)
    with pytest.raises(TaskmaskError, match="expected an NPZ archive"):
        read_table(path)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TaskmaskError, match=r"unknown file type '\.xlsx'"):
        read_table(tmp_path / "data.xlsx")
    with pytest.raises(TaskmaskError, match="file not found") as info:
        read_table(tmp_path / "nothing.csv")
    assert "nothing.csv" in str(info.value)
