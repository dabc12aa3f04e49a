"""The built-in task kinds, one file each, registered with `taskmask.tasks.register_kind`
like a user's kind when `taskmask.tasks` is imported.

- ``binary``: one logit; targets 0/1.
- ``multilabel``: k logits, one per named label; targets 0/1 per label.
- ``multiclass``: k-way softmax over named classes; targets as names or indices.
- ``regression``: 1..k real outputs, each may be missing alone.
- ``count``: 1..k Poisson rates with a log link; targets are non-negative integers.

A built-in kind cannot be unregistered; ``register_kind(name, spec, replace=True)`` replaces
it in this process.
"""

from taskmask.tasks._registry import mark_builtin, register_kind
from taskmask.tasks._task import TaskKindSpec
from taskmask.tasks.kinds.binary import BINARY
from taskmask.tasks.kinds.count import COUNT
from taskmask.tasks.kinds.multiclass import MULTICLASS
from taskmask.tasks.kinds.multilabel import MULTILABEL
from taskmask.tasks.kinds.regression import REGRESSION

BUILTIN_SPECS: dict[str, TaskKindSpec] = {
    "binary": BINARY,
    "multilabel": MULTILABEL,
    "multiclass": MULTICLASS,
    "regression": REGRESSION,
    "count": COUNT,
}

for _name, _spec in BUILTIN_SPECS.items():
    register_kind(_name, _spec)
    mark_builtin(_name)

__all__ = ["BINARY", "BUILTIN_SPECS", "COUNT", "MULTICLASS", "MULTILABEL", "REGRESSION"]
