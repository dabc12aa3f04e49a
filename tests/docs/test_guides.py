"""The guides' Python blocks run as written and print what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _run_python_blocks(page: str) -> tuple[dict[str, object], list[str]]:
    """The namespace after every ``python`` block of ``page``, and what they printed."""
    printed: list[str] = []
    namespace: dict[str, object] = {"print": lambda *args: printed.append(" ".join(map(str, args)))}
    text = (DOCS / page).read_text()
    for block in re.findall(r"```python\n(.*?)```", text, re.DOTALL):
        exec(compile(block, f"docs/{page}", "exec"), namespace)
    return namespace, printed


def test_the_checkpoints_guide_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _, printed = _run_python_blocks("checkpoints.md")
    assert printed == ["[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]", "True"]
    assert (tmp_path / "ckpt" / "checkpoint.json").is_file()
