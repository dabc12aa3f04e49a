"""Heads keyed by task name whatever the name holds: `head_key` leaves a name without '.'
unchanged (0.1.0 state dicts load as they are) and makes any other name a valid module key."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from taskmask.errors import TaskmaskError
from taskmask.model import MultiTaskModel
from taskmask.model._heads import TaskHeads, head_key
from taskmask.tasks import Task


@pytest.mark.parametrize("name", ["tox", "NR-AR", "a b", "x%y", "Ä", "0"])
def test_a_name_without_a_dot_is_its_own_key(name: str) -> None:
    assert head_key(name) == name


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("a.b", "a%2Eb"),
        ("tox.1", "tox%2E1"),
        (".", "%2E"),
        ("values", "%values"),
        ("training", "%training"),
    ],
)
def test_dots_and_attribute_names_are_escaped(name: str, key: str) -> None:
    assert head_key(name) == key
    heads = TaskHeads({name: nn.Linear(2, 1)})
    assert list(heads) == [name] and name in heads and list(heads.keys()) == [name]
    assert heads[name] is dict(heads.items())[name]
    assert list(heads.state_dict()) == [f"{key}.weight", f"{key}.bias"]


def test_two_names_with_one_key_are_an_error_naming_both() -> None:
    with pytest.raises(TaskmaskError, match=r"'a\.b' and 'a%2Eb'"):
        TaskHeads({"a.b": nn.Linear(2, 1), "a%2Eb": nn.Linear(2, 1)})


def _model() -> MultiTaskModel:
    torch.manual_seed(0)
    tasks = [
        Task(name="a.b", kind="binary"),
        Task(name="a", kind="multilabel", labels=("b.c", "d")),
        Task(name="values", kind="regression"),
    ]
    return MultiTaskModel(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), tasks, (3,))


def test_fused_heads_keep_the_escaped_per_task_keys_and_load_back() -> None:
    model = _model()
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    assert [k for k in plain if k.startswith("heads.")] == [
        "heads.a%2Eb.weight",
        "heads.a%2Eb.bias",
        "heads.a.weight",
        "heads.a.bias",
        "heads.%values.weight",
        "heads.%values.bias",
    ]
    x = torch.rand(5, 3)
    expected = {name: out.detach().clone() for name, out in model(x).items()}
    with model.fused_heads():
        assert model.fused is not None and len(model.fused) == 1
        fused = model.state_dict()
        assert list(fused) == list(plain)
        for key in plain:
            torch.testing.assert_close(fused[key], plain[key], rtol=0, atol=0)
        model.load_state_dict({k: torch.zeros_like(v) for k, v in plain.items()})
        assert all(float(out.detach().abs().sum()) == 0.0 for out in model(x).values())
    other = _model()
    with other.fused_heads():
        other.load_state_dict(plain)
    for name, out in other(x).items():
        torch.testing.assert_close(out, expected[name], rtol=0, atol=0)
