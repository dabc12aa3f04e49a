"""The estimators: `MultiTaskClassifier` and `MultiTaskRegressor`, each scored on observed
labels only."""

from __future__ import annotations

from typing import Any, Self

from sklearn.base import ClassifierMixin, RegressorMixin

from taskmask.sklearn._base import BaseMultiTaskEstimator
from taskmask.sklearn._scoring import MaskedScorer


class MultiTaskClassifier(ClassifierMixin, BaseMultiTaskEstimator):  # type: ignore[misc]
    """Multi-task classifier that learns from ``y`` with missing labels: a shared MLP trunk and
    one head per task, trained by `taskmask.fit` (see `taskmask.sklearn` for ``y``).

    Parameters (keyword-only except ``tasks``; each is checked when `fit` runs):
        tasks: None (default: a task per column, kind inferred) or a list of `taskmask.Task`
            objects or dicts of its fields plus ``column`` / ``columns`` (column names, or
            positions in an array ``y``; default: the column named like the task), e.g.
            ``{"name": "scene", "kind": "multilabel", "columns": ["sea", "sunset"]}``. Columns
            no task names are inferred. Class labels are values, never indices.
        hidden: int or sequence of ints >= 1, default (64, 64): the trunk's layer widths.
        activation: "relu" (default), "gelu", "tanh", "silu", "leaky_relu" or "elu".
        dropout: float in [0, 1), default 0.0.
        epochs: int >= 1, default 100.
        batch_size: int >= 1, default 256.
        lr: float > 0, default 1e-3: the learning rate.
        weight_decay: float >= 0, default 0.0.
        optimizer: "adam" (default), "adamw" or "sgd".
        weighting: how task losses combine, a name in `taskmask.weighting.WEIGHTINGS`:
            "static" (default: each task's ``weight``), "uncertainty", "dwa", "gradnorm",
            "famo", or (with the ``jd`` extra) "upgrad", "mgda", "pcgrad", "cagrad", "nash_mtl".
        weighting_options: dict or None (default): keyword options of the weighting.
        standardize: bool, default True: scale each feature by its training mean and standard
            deviation inside the model (sparse ``X`` is never densified whole).
        validation_split: float in [0, 1), default 0.0: share of the rows held out, seeded;
            ``history_`` then has ``val/...`` losses and metrics.
        patience: int >= 1 or None (default): stop when ``val/loss`` has not improved for this
            many epochs and keep the best epoch's weights; needs ``validation_split > 0``.
        sentinel: float or None (default): a value that also means missing in inferred columns
            (explicit tasks use their own ``sentinel``: -1 for class labels by default).
        random_state: None (default), int or `numpy.random.RandomState`: seeds training; an int
            gives the same model on every fit on one machine.
        device: "auto" (default: CUDA when available), "cpu", "cuda", ... (``model_`` is
            moved to the CPU after training).
        verbose: bool, default False: show a progress bar.

    Attributes:
        model_: the trained `taskmask.MultiTaskModel` (``taskmask.save_model`` saves it).
        history_: one row per epoch (`pandas.DataFrame`): losses, task weights, validation.
        tasks_: the tasks, resolved. layout_: a `TaskColumns` per task.
        target_names_: the columns of ``y`` (``y`` / ``y0``, ``y1``, ... for arrays).
        classes_: the classes of a 1-D ``y``, else a list with one array per column.
        n_outputs_, outputs_2d_, n_features_in_, feature_names_in_ (DataFrame ``X`` only).

    Example:
        >>> import numpy as np
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> y = np.array([[0, "a"], [np.nan, "b"], [1, None], [1, "b"]], dtype=object)
        >>> clf = MultiTaskClassifier(hidden=8, epochs=5, random_state=0).fit(X, y)
        >>> [c.tolist() for c in clf.classes_], clf.predict(X).shape
        ([[0, 1], ['a', 'b']], (4, 2))
    """

    _classify = True

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def fit(self, X: Any, y: Any) -> Self:
        super().fit(X, y)
        by_column = {c: k for e in self.layout_ for c, k in zip(e.columns, e.classes, strict=True)}
        classes = [by_column[name] for name in self.target_names_]
        self.classes_ = classes if self.outputs_2d_ else classes[0]
        return self

    def predict_proba(self, X: Any) -> Any:
        """``(n_samples, n_classes)`` float64 probabilities for a 1-D ``y``, else a list with
        one such array per column of ``y`` (``None`` for a regression column)."""
        _, probabilities = self._outputs(X)
        columns = [probabilities[name] for name in self.target_names_]
        return columns if self.outputs_2d_ else columns[0]

    def score(self, X: Any, y: Any) -> float:
        """Mean over tasks of accuracy (a multilabel task's: the mean over its labels; R² for a
        regression task) on observed labels only; see `MaskedScorer`."""
        return MaskedScorer()(self, X, y)


class MultiTaskRegressor(RegressorMixin, BaseMultiTaskEstimator):  # type: ignore[misc]
    """Multi-task regressor that learns from ``y`` with missing labels: numeric columns are
    regression tasks, text columns multiclass ones. Parameters and attributes are those of
    `MultiTaskClassifier` (no ``classes_``, no ``predict_proba``).

    Example:
        >>> import numpy as np
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> y = np.array([[0.0, 1.0], [np.nan, 3.0], [2.0, np.nan], [3.0, 7.0]])
        >>> reg = MultiTaskRegressor(hidden=8, epochs=5, random_state=0).fit(X, y)
        >>> reg.predict(X).shape, reg.predict(X).dtype
        ((4, 2), dtype('float64'))
    """

    def score(self, X: Any, y: Any) -> float:
        """Mean over tasks of R² (a task's: the mean over its outputs; accuracy for a class
        task) on observed labels only; see `MaskedScorer`."""
        return MaskedScorer()(self, X, y)
