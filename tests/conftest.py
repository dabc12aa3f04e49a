"""Test-session settings shared by every test module."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tiny models gain nothing from intra-op threads, and under ``pytest -n 2`` on two cores
    the threads of both workers fight: one thread each keeps the suite fast and stable."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _own_feature_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each test its own, empty feature cache (`taskmask.data._cache`), never the user's."""
    monkeypatch.setenv("TASKMASK_CACHE_DIR", str(tmp_path_factory.mktemp("feature_cache")))
