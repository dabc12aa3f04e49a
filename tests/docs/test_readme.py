"""The README's Python quickstart runs as written and does what it says."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_a_python_quickstart() -> None:
    assert len(_python_blocks()) == 1


def test_python_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"print": lambda *args, **kwargs: None}
    exec(compile(_python_blocks()[0], str(README), "exec"), namespace)
    model = namespace["model"]
    names = namespace["predictions"]["scene"].names  # type: ignore[index]
    assert (tmp_path / "runs" / "quickstart-model" / "model.safetensors").is_file()
    assert len(names) == 3 and all(set(row) <= {"sea", "sunset"} for row in names)
    assert model.task_names == ("toxic", "scene", "age")  # type: ignore[attr-defined]
    history = namespace["result"].history  # type: ignore[attr-defined]
    assert history["train/loss"].iloc[-1] < history["train/loss"].iloc[0]
