"""Test-session settings shared by every test module."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tiny models gain nothing from intra-op threads, and under ``pytest -n 2`` on two cores
    the threads of both workers fight: one thread each keeps the suite fast and stable."""
    torch.set_num_threads(1)
