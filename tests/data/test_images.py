"""Image folders: pixels in [0, 1] at the asked size, labels as the CSV holds them, every bad
file named; archives unpacked once; per-channel statistics shaped for the model."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import taskmask.data.images as images
from taskmask.api import standardization
from taskmask.data.images import default_cache_dir, extract_archive, read_image_folder
from taskmask.errors import TaskmaskError
from taskmask.model import CNN2DConfig, MultiTaskModel, build_trunk
from taskmask.tasks import Task

DATA = Path(__file__).parents[3] / "shared" / "data"
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _solid(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (12, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _stripes(path: Path) -> None:
    """A 40x20 (width x height) image: red left quarter, green middle half, blue right quarter."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10] = RED
    pixels[:, 10:30] = GREEN
    pixels[:, 30:] = BLUE
    Image.fromarray(pixels).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _solid(tmp_path / "img" / "a.png", RED)
    _solid(tmp_path / "img" / "sub" / "b.png", BLUE, size=(5, 30))
    _solid(tmp_path / "img" / "c.jpg", GREEN)
    (tmp_path / "labels.csv").write_text("file,age,kind\nsub/b.png,30,cat\na.png,,NA\nc.jpg,7,\n")
    return tmp_path


def test_images_come_back_resized_in_csv_order_with_their_labels(folder: Path) -> None:
    inputs, labels = read_image_folder(folder / "img", folder / "labels.csv", size=(6, 4))
    assert inputs.shape == (3, 3, 6, 4) and inputs.dtype == torch.float32
    torch.testing.assert_close(
        inputs[0], torch.tensor([0.0, 0.0, 1.0])[:, None, None].expand(3, 6, 4)
    )
    torch.testing.assert_close(
        inputs[1], torch.tensor([1.0, 0.0, 0.0])[:, None, None].expand(3, 6, 4)
    )
    assert inputs[2, 1].min() > 0.9 and inputs[2, [0, 2]].max() < 0.1  # JPEG: nearly green
    assert list(labels.index) == ["sub/b.png", "a.png", "c.jpg"] and labels.index.name == "file"
    assert list(labels.columns) == ["age", "kind"]
    assert np.isnan(labels["age"].iloc[1]) and labels["kind"].iloc[1] == "NA"
    assert np.isnan(labels["kind"].iloc[2])


def test_grey_mode_gives_one_channel(folder: Path) -> None:
    inputs, _ = read_image_folder(folder / "img", folder / "labels.csv", size=(3, 3), mode="L")
    assert inputs.shape == (3, 1, 3, 3)
    assert float(inputs.max()) <= 1.0 and float(inputs.min()) >= 0.0


def test_crop_keeps_the_centre_and_stretch_keeps_everything(tmp_path: Path) -> None:
    _stripes(tmp_path / "s.png")
    (tmp_path / "labels.csv").write_text("name,y\ns.png,1\n")
    cropped, _ = read_image_folder(tmp_path, tmp_path / "labels.csv", size=(8, 8), fit="crop")
    stretched, _ = read_image_folder(tmp_path, tmp_path / "labels.csv", size=(8, 8))
    torch.testing.assert_close(cropped[0, :, :, 1:7].mean((1, 2)), torch.tensor([0.0, 1.0, 0.0]))
    assert stretched[0, 0, :, 0].min() > 0.9 and stretched[0, 2, :, -1].min() > 0.9


def test_file_column_picks_the_path_column(folder: Path) -> None:
    csv = folder / "other.csv"
    csv.write_text("y,path\n1,a.png\n")
    inputs, labels = read_image_folder(folder / "img", csv, size=(2, 2), file_column="path")
    assert inputs.shape == (1, 3, 2, 2) and list(labels.columns) == ["y"]


def _missing_image(folder: Path) -> Path:
    path = folder / "img" / "sub" / "b.png"
    path.unlink()
    return path


def _bad_image(folder: Path) -> Path:
    bad = folder / "img" / "a.png"
    bad.write_text("not an image")
    return bad


def _truncated_jpeg(folder: Path) -> Path:
    path = folder / "img" / "c.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), GREEN).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[:200])
    return path


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_missing_image, "image not found (1 of the 3"),
        (_bad_image, "not a readable image"),
        (_truncated_jpeg, "not a readable image"),
    ],
    ids=["missing", "not-an-image", "truncated"],
)
def test_a_bad_image_raises_naming_the_file(folder: Path, spoil, message) -> None:
    path = spoil(folder)
    with pytest.raises(TaskmaskError) as info:
        read_image_folder(folder / "img", folder / "labels.csv", size=(4, 4))
    assert str(path) in str(info.value) and message in str(info.value)


@pytest.mark.parametrize(
    ("options", "csv_text", "message"),
    [
        ({"file_column": "path"}, None, r"no column 'path' \(file_column\); the file has columns"),
        ({}, "file,age\n", "labels.csv: no rows"),
        ({"size": (4, 0)}, None, r"size must be \(height, width\)"),
        ({"mode": "CMYK"}, None, "mode must be 'RGB' or 'L'"),
        ({"fit": "pad"}, None, "fit must be 'stretch' or 'crop'"),
    ],
)
def test_bad_arguments_raise(folder: Path, options, csv_text, message) -> None:
    if csv_text is not None:
        (folder / "labels.csv").write_text(csv_text)
    with pytest.raises(TaskmaskError, match=message):
        read_image_folder(folder / "img", folder / "labels.csv", **options)


def test_a_missing_label_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TaskmaskError, match=r"nope\.csv: label file not found"):
        read_image_folder(tmp_path, tmp_path / "nope.csv")


def _archive(tmp_path: Path, text: str = "one") -> Path:
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True, exist_ok=True)
    (source / "images" / "x.txt").write_text(text)
    archive = tmp_path / "pack.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "images", arcname="images")
    return archive


def test_an_archive_is_extracted_once(tmp_path: Path, monkeypatch) -> None:
    archive = _archive(tmp_path)
    target = extract_archive(archive, tmp_path / "cache")
    assert target == tmp_path / "cache" / "pack"
    assert (target / "images" / "x.txt").read_text() == "one"

    def fail(*args, **kwargs):
        raise AssertionError("the archive was read again")

    with monkeypatch.context() as patch:
        patch.setattr(images.tarfile, "open", fail)
        assert extract_archive(archive, tmp_path / "cache") == target
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["pack"]


def test_a_changed_archive_is_extracted_again(tmp_path: Path) -> None:
    target = extract_archive(_archive(tmp_path, "one"), tmp_path / "cache")
    (target / "images" / "stale.txt").write_text("left over")
    extract_archive(_archive(tmp_path, "two, longer"), tmp_path / "cache")
    assert (target / "images" / "x.txt").read_text() == "two, longer"
    assert not (target / "images" / "stale.txt").exists()


def test_the_default_cache_follows_xdg(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "taskmask"
    assert extract_archive(_archive(tmp_path)) == tmp_path / "xdg" / "taskmask" / "pack"


def _junk_archive(tmp_path: Path) -> Path:
    archive = tmp_path / "junk.tar"
    archive.write_text("junk")
    return archive


def _truncated_archive(tmp_path: Path) -> Path:
    archive = _archive(tmp_path, "some text " * 1000)
    archive.write_bytes(archive.read_bytes()[:60])
    return archive


def _escaping_archive(tmp_path: Path) -> Path:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"x"
        member = tarfile.TarInfo("../outside.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return archive


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "absent.tar", "archive not found"),
        (_junk_archive, "not an extractable tar archive"),
        (_truncated_archive, "not an extractable tar archive"),
        (_escaping_archive, "not an extractable tar archive"),
    ],
    ids=["absent", "junk", "truncated", "escaping-member"],
)
def test_a_bad_archive_raises_naming_it(tmp_path: Path, make, message) -> None:
    archive = make(tmp_path)
    with pytest.raises(TaskmaskError) as info:
        extract_archive(archive, tmp_path / "cache")
    assert str(archive) in str(info.value) and message in str(info.value)
    assert not (tmp_path / "outside.txt").exists()
    assert not list(tmp_path.glob("cache/*")) and not list(tmp_path.glob("cache/.*"))


def test_channel_statistics_standardise_each_channel() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(10, 3, 5, 4, generator=gen) * torch.tensor([1.0, 5.0, 0.0])[:, None, None]
    x = x + torch.tensor([0.0, 2.0, 7.0])[:, None, None]
    mean, scale = standardization(x, per="channel")
    assert mean.shape == scale.shape == (1, 3, 5, 4)
    assert torch.equal(mean, mean[:, :, :1, :1].expand_as(mean))
    z = (x - mean) / scale
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[:, :2].std((0, 2, 3), correction=0), torch.ones(2))
    assert torch.all(scale[:, 2] == 1)  # a constant channel is left unscaled
    model = MultiTaskModel(
        build_trunk(CNN2DConfig(channels=(2,)), (3, 5, 4)),
        [Task(name="t", kind="binary")],
        (3, 5, 4),
        input_mean=mean,
        input_scale=scale,
    )
    assert torch.equal(model.input_mean, mean) and torch.equal(model.input_scale, scale)


def test_channel_statistics_need_a_channel_axis() -> None:
    with pytest.raises(TaskmaskError, match=r"\(N, channels, \.\.\.\) inputs, got \(4, 3\)"):
        standardization(torch.zeros(4, 3), per="channel")


def _real(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (the shared data folder is absent)")
    return path


def _unpack_some(archive: Path, names: list[str], dest: Path) -> None:
    with tarfile.open(archive) as tar:
        for name in names:
            tar.extract(tar.getmember(f"images/{name}"), dest, filter="data")


@pytest.mark.parametrize(
    ("name", "archive", "csv", "rows", "columns"),
    [
        (
            "miml_scene",
            "miml_images.tar",
            "miml_labels.csv",
            [0, 1, 1999],
            ["desert", "mountains", "sea", "sunset", "trees"],
        ),
        (
            "utkface_subset",
            "utkface_9780_images.tar",
            "utkface_labels.csv",
            [0, 7878, 7884],
            ["age", "gender", "race"],
        ),
    ],
)
def test_real_image_sets_read_with_their_label_files(tmp_path, name, archive, csv, rows, columns):
    """A few images of each set; UTKFace rows 7878 and 7884 are its two files with blank labels."""
    source = _real(name)
    table = pd.read_csv(source / csv, dtype=str, keep_default_na=False).iloc[rows]
    table.to_csv(tmp_path / "labels.csv", index=False)
    _unpack_some(source / archive, table.iloc[:, 0].tolist(), tmp_path)
    inputs, labels = read_image_folder(tmp_path / "images", tmp_path / "labels.csv", size=(32, 32))
    assert inputs.shape == (3, 3, 32, 32) and list(labels.columns) == columns
    assert float(inputs.min()) >= 0.0 and float(inputs.max()) <= 1.0 and inputs.std() > 0.05
    if name == "utkface_subset":
        assert labels["race"].isna().tolist() == [False, True, True]
        assert labels["gender"].isna().tolist() == [False, False, True]


def _member(tar: tarfile.TarFile, name: str, **fields: object) -> None:
    member = tarfile.TarInfo(name)
    for key, value in fields.items():
        setattr(member, key, value)
    tar.addfile(member, io.BytesIO(b"x") if member.isfile() else None)


def _hostile(tmp_path: Path, kind: str) -> Path:
    archive = tmp_path / f"{kind}.tar"
    with tarfile.open(archive, "w") as tar:
        _member(tar, "ok.txt", size=1)
        if kind == "absolute":
            _member(tar, str(tmp_path / "outside.txt"), size=1)
        elif kind == "dotdot":
            _member(tar, "sub/../../outside.txt", size=1)
        elif kind == "symlink":
            _member(tar, "link", type=tarfile.SYMTYPE, linkname="../outside.txt")
        elif kind == "absolute-symlink":
            _member(tar, "link", type=tarfile.SYMTYPE, linkname=str(tmp_path / "outside.txt"))
        elif kind == "hardlink":
            _member(tar, "link", type=tarfile.LNKTYPE, linkname="../outside.txt")
        else:
            _member(tar, "fifo", type=tarfile.FIFOTYPE)
    return archive


@pytest.fixture(params=["filter", "no-filter"])
def tarfile_flavour(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tarfile of this Python, and one like 3.11.0-3.11.3's: no extraction filters."""
    if request.param == "no-filter":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
        extract = tarfile.TarFile.extractall

        def old_extractall(self, path=".", members=None, *, numeric_owner=False, **kwargs):  # type: ignore[no-untyped-def]
            if kwargs:  # as on Python < 3.11.4: TypeError on filter=
                raise TypeError(f"extractall() got an unexpected keyword argument {kwargs}")
            return extract(self, path, members, numeric_owner=numeric_owner, filter="fully_trusted")

        monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    return str(request.param)


def test_a_good_archive_extracts_on_every_python(tmp_path: Path, tarfile_flavour: str) -> None:
    source = tmp_path / "source" / "images"
    source.mkdir(parents=True)
    (source / "x.txt").write_text("one")
    (source / "sub").mkdir()
    (source / "sub" / "y.txt").write_text("two")
    (source / "alias").symlink_to("x.txt")
    os.chmod(source / "x.txt", 0o4775)  # set-uid and group write: dropped on extraction
    archive = tmp_path / "pack.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname="images")
    target = extract_archive(archive, tmp_path / "cache")
    assert (target / "images" / "sub" / "y.txt").read_text() == "two"
    assert (target / "images" / "alias").read_text() == "one"
    assert (target / "images" / "x.txt").stat().st_mode & 0o7777 == 0o755


def test_absolute_names_land_inside_the_folder(tmp_path: Path, tarfile_flavour: str) -> None:
    target = extract_archive(_hostile(tmp_path, "absolute"), tmp_path / "cache")
    assert not (tmp_path / "outside.txt").exists()
    assert (target / str(tmp_path / "outside.txt").lstrip("/")).read_text() == "x"


@pytest.mark.parametrize("kind", ["dotdot", "symlink", "absolute-symlink", "hardlink", "fifo"])
def test_hostile_members_are_refused_on_every_python(
    tmp_path: Path, tarfile_flavour: str, kind: str
) -> None:
    archive = _hostile(tmp_path, kind)
    with pytest.raises(TaskmaskError, match="not an extractable tar archive") as info:
        extract_archive(archive, tmp_path / "cache")
    assert str(archive) in str(info.value)
    assert not (tmp_path / "outside.txt").exists()
    assert not list(tmp_path.glob("cache/*")) and not list(tmp_path.glob("cache/.*"))
