"""Time series: folders of per-recording text files and NPZ arrays become (N, channels, length)
float32, cropped or padded as documented, with every bad file named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmask.data.images import extract_archive
from taskmask.data.series import HMP_NAME_PATTERN, fit_length, read_series_folder, read_series_npz
from taskmask.errors import TaskmaskError

FAST = settings(max_examples=30, deadline=None)
DATA = Path(__file__).parents[3] / "shared" / "data"


def _write(path: Path, rows: np.ndarray | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = rows if isinstance(rows, str) else "\n".join(" ".join(map(str, r)) for r in rows)
    path.write_text(text + "\n")
    return path


def _ramp(length: int, start: int = 0) -> np.ndarray:
    """``(length, 3)``: channel c at step t holds ``start + 10 * t + c``."""
    return start + 10 * np.arange(length)[:, None] + np.arange(3)


@pytest.fixture
def hmp_like(tmp_path: Path) -> Path:
    root = tmp_path / "HMP"
    _write(root / "Walk" / "Accelerometer-2011-03-24-10-24-39-walk-f1.txt", _ramp(6))
    _write(root / "Walk" / "Accelerometer-2011-05-30-21-10-57-walk-m11.txt", _ramp(3, 1))
    _write(root / "Brush_teeth" / "Accelerometer-2011-04-11-13-28-18-brush_teeth-f2.txt", _ramp(4))
    _write(root / "README.txt", "not a recording")
    return root


@FAST
@given(
    total=st.integers(1, 12),
    length=st.integers(1, 12),
    crop=st.sampled_from(["start", "center"]),
    pad_value=st.sampled_from([0.0, -1.0]),
)
def test_fit_length_crops_or_pads_at_the_end(total, length, crop, pad_value) -> None:
    series = np.arange(2 * total, dtype=np.float32).reshape(2, total) + 1
    out = fit_length(series, length, crop=crop, pad_value=pad_value)
    assert out.shape == (2, length)
    if total >= length:
        start = (total - length) // 2 if crop == "center" else 0
        np.testing.assert_array_equal(out, series[:, start : start + length])
    else:
        np.testing.assert_array_equal(out[:, :total], series)
        assert np.all(out[:, total:] == pad_value)


def test_a_folder_per_class_reads_with_names_parsed(hmp_like: Path) -> None:
    inputs, frame = read_series_folder(
        hmp_like, pattern="*/*.txt", length=4, name_pattern=HMP_NAME_PATTERN
    )
    assert inputs.shape == (3, 3, 4) and inputs.dtype == torch.float32
    assert frame["folder"].tolist() == ["Brush_teeth", "Walk", "Walk"]
    assert (
        frame["file"].iloc[0] == "Brush_teeth/Accelerometer-2011-04-11-13-28-18-brush_teeth-f2.txt"
    )
    assert frame["length"].tolist() == [4, 6, 3]
    assert frame["activity"].tolist() == ["brush_teeth", "walk", "walk"]
    assert frame["volunteer"].tolist() == ["f2", "f1", "m11"]
    assert frame["gender"].tolist() == ["f", "f", "m"]
    assert frame["time"].iloc[1] == "2011-03-24-10-24-39"
    torch.testing.assert_close(inputs[0], torch.from_numpy(_ramp(4).T).float())  # as is
    torch.testing.assert_close(inputs[1], torch.from_numpy(_ramp(4).T).float())  # first 4 of 6
    expected = np.zeros((3, 4), dtype=np.float32)
    expected[:, :3] = _ramp(3, 1).T
    torch.testing.assert_close(inputs[2], torch.from_numpy(expected))  # zero-padded at the end


def test_centre_cropping_takes_the_middle(hmp_like: Path) -> None:
    inputs, _ = read_series_folder(hmp_like, pattern="Walk/*.txt", length=2, crop="center")
    torch.testing.assert_close(inputs[0], torch.from_numpy(_ramp(6)[2:4].T).float())


def test_top_level_files_have_an_empty_folder(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", "1,2\n3,4")
    inputs, frame = read_series_folder(tmp_path, pattern="*.csv", delimiter=",")
    assert frame["folder"].tolist() == [""] and frame["file"].tolist() == ["a.csv"]
    torch.testing.assert_close(inputs, torch.tensor([[[1.0, 3.0], [2.0, 4.0]]]))


def test_unequal_lengths_need_a_length(hmp_like: Path) -> None:
    shortest = hmp_like / "Walk" / "Accelerometer-2011-05-30-21-10-57-walk-m11.txt"
    with pytest.raises(TaskmaskError, match=r"lengths 3 to 6 .* has 3\); pass length=") as info:
        read_series_folder(hmp_like, pattern="*/*.txt")
    assert str(shortest) in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2 3\n4 5", "not one row of numbers per time step"),
        ("1 2 3\n4 x 6", "not one row of numbers per time step"),
        ("1 2 3\n4 nan 6", "NaN or infinite value at time step 1, channel 1"),
        ("  \n", "no samples"),
        ("1 2\n3 4", "2 channels, but"),
    ],
    ids=["ragged", "text", "nan", "empty", "channels"],
)
def test_a_bad_recording_raises_naming_the_file(hmp_like: Path, text, message) -> None:
    bad = _write(hmp_like / "Walk" / "Accelerometer-2011-06-01-00-00-00-walk-f3.txt", text)
    with pytest.raises(TaskmaskError) as info:
        read_series_folder(hmp_like, pattern="*/*.txt", length=4)
    assert str(bad) in str(info.value) and message in str(info.value)


def test_a_name_off_the_pattern_raises_naming_the_file(hmp_like: Path) -> None:
    odd = _write(hmp_like / "Walk" / "walk-recording.txt", _ramp(4))
    with pytest.raises(TaskmaskError, match="does not match name_pattern") as info:
        read_series_folder(hmp_like, pattern="*/*.txt", length=4, name_pattern=HMP_NAME_PATTERN)
    assert str(odd) in str(info.value)


def test_no_matching_files_or_no_folder_raise(tmp_path: Path) -> None:
    with pytest.raises(TaskmaskError, match=r"no files match '\*\.txt'"):
        read_series_folder(tmp_path)
    with pytest.raises(TaskmaskError, match="absent: folder not found"):
        read_series_folder(tmp_path / "absent")


def test_npz_arrays_in_each_layout(tmp_path: Path) -> None:
    series = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    path = tmp_path / "s.npz"
    np.savez(path, x=series, last=series.transpose(0, 2, 1), flat=series[:, 0])
    expected = torch.from_numpy(series).float()
    torch.testing.assert_close(read_series_npz(path, "x"), expected)
    torch.testing.assert_close(read_series_npz(path, "last", channels_last=True), expected)
    torch.testing.assert_close(read_series_npz(path, "flat"), expected[:, :1])
    torch.testing.assert_close(
        read_series_npz(path, "x", length=2, crop="center"), expected[..., 1:3]
    )
    padded = read_series_npz(path, "x", length=5, pad_value=-1.0)
    assert padded.shape == (2, 3, 5) and torch.all(padded[..., 4] == -1)


@pytest.mark.parametrize(
    ("key", "array", "message"),
    [
        ("y", np.zeros((2, 3)), r"no array 'y' \(series\)"),
        ("x", np.zeros(3), r"shape \(3,\); expected \(N, channels, T\)"),
        ("x", np.array([["a", "b"]]), "is not numeric"),
        ("x", np.array([[[0.0, np.inf]]]), "NaN or infinite in series 0"),
        ("x", np.zeros((0, 2, 3)), "is empty"),
    ],
)
def test_a_bad_npz_array_raises_naming_the_file(tmp_path: Path, key, array, message) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x=array)
    with pytest.raises(TaskmaskError, match=message) as info:
        read_series_npz(path, key)
    assert str(path) in str(info.value)


def test_real_hmp_recordings(tmp_path: Path) -> None:
    """One activity of the HMP ADL data set: 12 recordings, 3 channels coded 0..63."""
    archive = DATA / "hmp_adl" / "HMP_Dataset.tar.gz"
    if not archive.is_file():
        pytest.skip(f"real data not found at {archive} (the shared data folder is absent)")
    root = extract_archive(archive, tmp_path / "cache") / "HMP_Dataset"
    inputs, frame = read_series_folder(
        root, pattern="Brush_teeth/*.txt", length=256, name_pattern=HMP_NAME_PATTERN
    )
    assert inputs.shape == (12, 3, 256)
    assert set(frame["folder"]) == {"Brush_teeth"} and set(frame["activity"]) == {"brush_teeth"}
    assert frame["gender"].value_counts().to_dict() == {"f": 10, "m": 2}
    real = torch.cat([inputs[i, :, : min(n, 256)].flatten() for i, n in enumerate(frame["length"])])
    assert real.min() >= 0 and real.max() <= 63 and real.std() > 1
