"""Atomic writes leave files with the permissions the user's umask gives any new file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from training_script import model

from taskmask._io import atomic_directory, write_atomically
from taskmask.persistence import save_model


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_file_gets_the_mode_of_any_new_file(tmp_path: Path, umask: int) -> None:
    (tmp_path / "plain.txt").write_text("x")
    write_atomically(tmp_path / "atomic.txt", lambda tmp: tmp.write_text("x"))
    assert _mode(tmp_path / "atomic.txt") == _mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert os.umask(umask) == umask  # the umask is as it was


def test_every_file_of_a_model_directory_has_the_same_mode(tmp_path: Path, umask: int) -> None:
    directory = save_model(model(), tmp_path / "model")
    modes = {path.name: _mode(path) for path in directory.iterdir()}
    assert set(modes) == {"model.json", "model.safetensors"}
    assert set(modes.values()) == {0o666 & ~umask}
    assert _mode(directory) == 0o777 & ~umask


def test_a_directory_gets_the_mode_of_any_new_directory(tmp_path: Path, umask: int) -> None:
    atomic_directory(tmp_path / "out", lambda tmp: (tmp / "f").write_text("x"))
    assert _mode(tmp_path / "out") == 0o777 & ~umask
    assert _mode(tmp_path / "out" / "f") == 0o666 & ~umask
