"""What `MultiTaskClassifier` and `MultiTaskRegressor` share: their parameters, read into
taskmask's configs, and ``fit`` / ``predict``, which hand ``X`` and ``Y`` to `taskmask.fit` and read
the model's outputs back as ``Y``'s values."""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Self, cast

import numpy as np
import torch
from pydantic import ValidationError
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from taskmask.api import fit
from taskmask.data._rows import SparseRows, chunk_rows
from taskmask.model._model import raw_outputs
from taskmask.model._trunks import MLPConfig
from taskmask.predict import _task_prediction
from taskmask.sklearn._targets import (
    predicted_probabilities,
    predicted_values,
    stack_columns,
    target_frame,
    task_columns,
    taskmask_labels,
)
from taskmask.tasks._task import Task
from taskmask.training._trainer import TrainConfig


def seed_from(random_state: Any) -> int:
    """The int seed of ``random_state``: an int as it is, else a draw from
    `check_random_state` (None: NumPy's global generator)."""
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


class BaseMultiTaskEstimator(BaseEstimator):  # type: ignore[misc]
    """What `MultiTaskClassifier` and `MultiTaskRegressor` share; see their docstrings."""

    _classify = False

    def __init__(
        self,
        tasks: Sequence[Task | Mapping[str, Any]] | None = None,
        *,
        hidden: int | Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        weighting: str = "static",
        weighting_options: Mapping[str, Any] | None = None,
        standardize: bool = True,
        validation_split: float = 0.0,
        patience: int | None = None,
        sentinel: float | None = None,
        random_state: Any = None,
        device: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.tasks = tasks
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.weighting = weighting
        self.weighting_options = weighting_options
        self.standardize = standardize
        self.validation_split = validation_split
        self.patience = patience
        self.sentinel = sentinel
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        return tags

    def _settings(self) -> tuple[MLPConfig, TrainConfig]:
        """The parameters as taskmask's validated configs (a bad value is a ValueError)."""
        hidden = (self.hidden,) if isinstance(self.hidden, numbers.Integral) else self.hidden
        stopping = None if self.patience is None else {"patience": self.patience}
        trunk = {"hidden": hidden, "activation": self.activation, "dropout": self.dropout}
        training = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "optimizer": self.optimizer,
            "weighting": self.weighting,
            "weighting_options": dict(self.weighting_options or {}),
            "validation_split": self.validation_split,
            "early_stopping": stopping,
            "seed": seed_from(self.random_state),
            "device": self.device,
            "progress": bool(self.verbose),
            "train_metrics": False,
        }
        try:
            return MLPConfig.model_validate(trunk), TrainConfig.model_validate(training)
        except ValidationError as error:
            raise ValueError(f"{type(self).__name__}: invalid parameters:\n{error}") from None

    def fit(self, X: Any, y: Any) -> Self:
        """Train on ``X`` ``(n_samples, n_features)``, dense or sparse, and ``y`` with missing
        labels (see `taskmask.sklearn`); returns ``self``."""
        trunk, config = self._settings()
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32)
        frame, self.outputs_2d_ = target_frame(y, X.shape[0], type(self).__name__)
        layout = task_columns(frame, self.tasks, classify=self._classify, sentinel=self.sentinel)
        labels = {entry.task.name: taskmask_labels(entry, frame) for entry in layout}
        tasks = [entry.task for entry in layout]
        names = getattr(self, "feature_names_in_", None)
        options: dict[str, Any] = {
            "trunk": trunk,
            "standardize": self.standardize,
            "feature_names": None if names is None else [str(n) for n in names],
            "config": config,
        }
        result = fit(X, labels, tasks, **options)
        self.model_ = result.model.cpu().eval()
        self.history_ = result.history
        self.tasks_ = self.model_.tasks
        self.layout_ = tuple(replace(e, task=self.model_.task(e.task.name)) for e in layout)
        self.target_names_ = tuple(frame.columns)
        self.n_outputs_ = len(self.target_names_)
        return self

    def _outputs(self, X: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
        """Per column of ``y``: the predictions and the class probabilities."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        # float64 inference from the float32 weights: a row's output does not depend on batching
        model = copy.deepcopy(self.model_).double()
        rows = cast(torch.Tensor, SparseRows(X, np.float64))
        outputs = raw_outputs(model, rows, batch_size=chunk_rows(X.shape[1]))
        decoded: dict[str, np.ndarray] = {}
        probabilities: dict[str, np.ndarray | None] = {}
        for entry in self.layout_:
            pred = _task_prediction(entry.task, outputs[entry.task.name])
            columns = entry.columns
            decoded.update(zip(columns, predicted_values(entry, pred), strict=True))
            probabilities.update(zip(columns, predicted_probabilities(entry, pred), strict=True))
        return decoded, probabilities

    def predict(self, X: Any) -> np.ndarray:
        """Class values or float64 values: ``(n_samples,)`` for a 1-D ``y``, else
        ``(n_samples, n_outputs)`` in the column order of ``y``."""
        decoded, _ = self._outputs(X)
        stacked = stack_columns([decoded[name] for name in self.target_names_])
        return stacked if self.outputs_2d_ else stacked[:, 0]
