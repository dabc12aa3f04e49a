"""Jacobian descent on the trunk: UPGrad, MGDA, PCGrad, CAGrad and Nash-MTL, from torchjd.

The trunk's update is an aggregation of the per-task gradients of the tasks observed in the
batch, rather than the gradient of a weighted sum; every head follows the plain gradient of its
own task's loss. torchjd is the optional extra ``pip install 'taskmask[jd]'``; some aggregators
need further packages of torchjd's own extras, named in ``_AGGREGATORS``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch

from taskmask.errors import TaskmaskError
from taskmask.weighting._weighting import Weighting

# name -> (torchjd class, torchjd extra that installs the packages it needs, or None).
_AGGREGATORS: dict[str, tuple[str, str | None]] = {
    "upgrad": ("UPGrad", "quadprog_projector"),  # numpy, qpsolvers, quadprog
    "mgda": ("MGDA", None),
    "pcgrad": ("PCGrad", None),
    "cagrad": ("CAGrad", "cagrad"),  # numpy, cvxpy (with its clarabel solver)
    "nash_mtl": ("NashMTL", "nash_mtl"),  # numpy, cvxpy, ecos
}
# torchjd's CAGrad has no default radius; 0.4 is the CAGrad paper's for NYUv2 and Cityscapes.
_DEFAULTS: dict[str, dict[str, Any]] = {"cagrad": {"c": 0.4}}


def _torchjd() -> tuple[ModuleType, ModuleType]:
    """``(torchjd.aggregation, torchjd.autojac)``, imported only when a method needs them."""
    try:
        from torchjd import aggregation, autojac
    except ImportError as error:
        raise TaskmaskError(
            "the Jacobian aggregators need torchjd: pip install 'taskmask[jd]'"
        ) from error
    return aggregation, autojac


def _leaves(root: torch.Tensor, excluded: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors whose ``.grad`` back-propagating ``root`` would fill, less ``excluded``."""
    skip = {id(t) for t in excluded}
    found: list[torch.Tensor] = []
    seen: set[Any] = set()
    stack = [root.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # only AccumulateGrad nodes have one
        if leaf is not None and id(leaf) not in skip:
            found.append(leaf)
        stack.extend(child for child, _ in node.next_functions)
    return found


class JacobianAggregation(Weighting):
    """Jacobian descent with a torchjd aggregator for the trunk, plain gradients for the heads.

    The trunk (``shared``) gets ``aggregator(J)`` where ``J`` ``(k, n_shared)`` stacks the
    gradients of the ``k`` tasks observed in the batch: a task with ``n_observed == 0`` is left
    out of ``J`` (a zero row would, for instance, make MGDA's update zero). With one observed
    task, its plain gradient is the update (exact for UPGrad, MGDA and PCGrad; CAGrad would
    scale it by ``1 + c``, and Nash-MTL cannot solve for one task). Each head gets the gradient
    of the losses that reach it, as with a plain sum. ``aggregator_options`` go to the torchjd
    class (CAGrad's radius ``c`` defaults to 0.4 here); a ``pref_vector`` for UPGrad has one
    entry per task, and Nash-MTL's ``n_tasks`` is set here. An aggregator keeps one instance,
    hence one state, per set of observed tasks (Nash-MTL's warm start).

    Methods: `UPGrad <https://arxiv.org/abs/2406.16232>`_ (needs ``torchjd[quadprog_projector]``),
    `MGDA <https://arxiv.org/abs/1810.04650>`_, `PCGrad <https://arxiv.org/abs/2001.06782>`_,
    `CAGrad <https://arxiv.org/abs/2110.14048>`_ (needs ``torchjd[cagrad]``), `Nash-MTL
    <https://arxiv.org/abs/2202.01017>`_ (needs ``torchjd[nash_mtl]``).

    ``current_weights()`` is all ones: the history's total loss stays the plain sum. The last
    aggregation's weight of each task's trunk gradient is ``aggregation_weights`` (0 for a task
    not observed in that batch, NaN before the first step).
    """

    owns_backward = True

    def __init__(self, n_tasks: int, /, *, aggregator: str, **aggregator_options: Any) -> None:
        super().__init__()
        if n_tasks < 1:
            raise TaskmaskError(f"n_tasks must be >= 1, got {n_tasks}")
        if aggregator not in _AGGREGATORS:
            raise TaskmaskError(
                f"unknown aggregator {aggregator!r}; choose one of {sorted(_AGGREGATORS)}"
            )
        if aggregator == "nash_mtl" and "n_tasks" in aggregator_options:
            raise TaskmaskError("nash_mtl: n_tasks is set from the observed tasks; leave it out")
        preference = aggregator_options.get("pref_vector")
        if preference is not None and torch.as_tensor(preference).shape != (n_tasks,):
            raise TaskmaskError(
                f"pref_vector must have shape ({n_tasks},), one entry per task, "
                f"got {tuple(torch.as_tensor(preference).shape)}"
            )
        self.n_tasks = n_tasks
        self.aggregator = aggregator
        self.aggregator_options = {**_DEFAULTS.get(aggregator, {}), **aggregator_options}
        self.aggregation_weights = torch.full((n_tasks,), float("nan"))
        self._aggregators: dict[tuple[int, ...], Any] = {}
        self._aggregator_for(tuple(range(n_tasks)))  # fail now on missing packages, bad options

    def _aggregator_for(self, observed: tuple[int, ...]) -> Any:
        """The torchjd aggregator for the Jacobian of the tasks ``observed`` (indices)."""
        if observed in self._aggregators:
            return self._aggregators[observed]
        aggregation, _ = _torchjd()
        options = dict(self.aggregator_options)
        if options.get("pref_vector") is not None:
            options["pref_vector"] = torch.as_tensor(options["pref_vector"])[list(observed)]
        if self.aggregator == "nash_mtl":
            options["n_tasks"] = len(observed)
        name, extra = _AGGREGATORS[self.aggregator]
        try:
            built = getattr(aggregation, name)(**options)
        except ImportError as error:
            raise TaskmaskError(
                f"weighting {self.aggregator!r} needs packages from torchjd's extra {extra!r}: "
                f"pip install 'torchjd[{extra}]' ({error})"
            ) from error
        except (TypeError, ValueError) as error:
            raise TaskmaskError(
                f"weighting {self.aggregator!r}: invalid options {self.aggregator_options}: {error}"
            ) from error
        self._aggregators[observed] = built
        return built

    def forward(self, losses: torch.Tensor, n_observed: torch.Tensor) -> torch.Tensor:
        """The plain sum of the task losses (for logging; `backward` is the method)."""
        return losses.sum()

    def current_weights(self) -> torch.Tensor:
        return torch.ones(self.n_tasks)

    def backward(
        self, losses: torch.Tensor, n_observed: torch.Tensor, *, shared: Sequence[torch.Tensor]
    ) -> None:
        """Aggregated Jacobian into the trunk's ``.grad``, plain gradients into the heads'."""
        if losses.shape != (self.n_tasks,) or n_observed.shape != (self.n_tasks,):
            raise TaskmaskError(
                f"losses and n_observed must have shape ({self.n_tasks},), got "
                f"{tuple(losses.shape)} and {tuple(n_observed.shape)}"
            )
        shared = [p for p in shared if p.requires_grad]
        observed = tuple(int(i) for i in torch.nonzero(n_observed > 0).flatten().tolist())
        weights = torch.zeros(self.n_tasks, dtype=losses.dtype)
        if len(observed) < 2 or not shared:  # nothing to aggregate: the plain gradient
            weights[list(observed)] = 1.0
            self.aggregation_weights = weights
            torch.autograd.backward(losses.sum())
            return
        _, autojac = _torchjd()
        heads = _leaves(losses, excluded=shared)
        autojac.backward(losses[list(observed)], inputs=shared, retain_graph=bool(heads))
        with warnings.catch_warnings():
            # cvxpy warns that torchjd's Nash-MTL problem is not DPP (so re-solving it is no
            # faster): nothing a user of taskmask can act on.
            warnings.filterwarnings("ignore", message=".*not DPP", category=UserWarning)
            used = autojac.jac_to_grad(shared, self._aggregator_for(observed))
        # torchjd returns the rows' weights for every aggregator here (all are weighted ones)
        weights[list(observed)] = (
            float("nan") if used is None else used.detach().to("cpu", losses.dtype)
        )
        self.aggregation_weights = weights
        if heads:
            torch.autograd.backward(losses.sum(), inputs=heads)
