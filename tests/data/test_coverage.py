import numpy as np
import torch

from taskmask.data import label_coverage, make_data
from taskmask.tasks import Task

TASKS = [
    Task(name="tox", kind="binary"),
    Task(name="scene", kind="multilabel", labels=("sea", "sunset")),
    Task(name="animal", kind="multiclass", labels=("cat", "dog")),
    Task(name="age", kind="regression"),
]


def _data():
    labels = {
        "tox": [1, 0, np.nan, 1, np.nan],
        "scene": [[1, -1], [0, 1], [-1, -1], [1, 1], [0, 0]],
        "animal": ["cat", "", "dog", "dog", None],
        "age": [np.nan, np.nan, 3.0, 4.0, np.nan],
    }
    return make_data(np.zeros((5, 2)), labels, TASKS)


def test_counts_per_label_ignore_missing_entries() -> None:
    table = label_coverage(_data(), TASKS).labels.set_index(["task", "label"])
    assert table.loc[("tox", "tox"), "n_observed"] == 3
    assert table.loc[("tox", "tox"), "n_positive"] == 2
    assert table.loc[("scene", "sea"), "n_observed"] == 4
    assert table.loc[("scene", "sunset"), "n_observed"] == 3
    assert table.loc[("scene", "sunset"), "positive_fraction"] == 2 / 3
    assert table.loc[("animal", "dog"), "n_positive"] == 2
    assert table.loc[("animal", "cat"), "n_observed"] == 3
    assert table.loc[("age", "age"), "observed_fraction"] == 2 / 5
    assert np.isnan(table.loc[("age", "age"), "n_positive"])


def test_co_observation_counts_rows_carrying_both_tasks() -> None:
    co = label_coverage(_data(), TASKS).co_observed
    assert co.loc["tox", "tox"] == 3
    assert co.loc["tox", "scene"] == co.loc["scene", "tox"] == 3
    assert co.loc["tox", "age"] == 1
    assert co.loc["animal", "age"] == 2
    assert co.loc["scene", "scene"] == 4


def test_a_task_without_labels_counts_as_never_observed() -> None:
    data = make_data(np.zeros((3, 1)), {"tox": [1, 0, 1]}, TASKS[:2])
    coverage = label_coverage(data, TASKS[:2])
    assert coverage.co_observed.loc["scene", "scene"] == 0
    assert coverage.co_observed.loc["tox", "tox"] == 3
    assert "label coverage over 3 rows" in coverage.to_text()
    assert torch.equal(
        torch.tensor(coverage.co_observed.to_numpy()), torch.tensor([[3, 0], [0, 0]])
    )


def test_the_printed_coverage_stays_short_at_any_number_of_tasks() -> None:
    n_tasks, n_rows = 617, 50
    generator = torch.Generator().manual_seed(0)
    labels = torch.rand(n_rows, n_tasks, generator=generator).round()
    labels[torch.rand(n_rows, n_tasks, generator=generator) < 0.6] = float("nan")
    labels[:, 3] = float("nan")
    labels[:2, 3] = 1.0  # task t3: the least observed, 2 rows
    tasks = [Task(name=f"t{t}", kind="binary") for t in range(n_tasks)]
    data = make_data(
        torch.zeros(n_rows, 1), {t.name: labels[:, i] for i, t in enumerate(tasks)}, tasks
    )
    coverage = label_coverage(data, tasks)
    text = coverage.to_text()
    lines = text.splitlines()
    assert len(lines) <= 20 and coverage.co_observed.shape == (n_tasks, n_tasks)
    assert lines[0].startswith(f"label coverage over {n_rows} rows: {n_tasks} tasks, 617 labels")
    assert "observed per label: min 2," in lines[0]
    assert lines[1] == "the 10 least observed:" and lines[3].split()[0] == "t3"
    assert lines[-1].startswith("task pairs sharing no row: ")
    assert f"of {n_tasks * (n_tasks - 1) // 2};" in lines[-1]
