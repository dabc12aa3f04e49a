"""Scoring that ignores missing labels: `MaskedScorer`, the estimators' ``score``, and
`make_masked_scorer` for ``cross_val_score`` and ``GridSearchCV``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.validation import check_is_fitted

from taskmask.sklearn._base import BaseMultiTaskEstimator
from taskmask.sklearn._targets import observed_labels, target_frame


@dataclass(frozen=True)
class MaskedScorer:
    """A scorer ``(estimator, X, y) -> float`` for ``cross_val_score`` and ``GridSearchCV``
    that ignores missing labels: per column of ``y``, ``metric(y_true, y_pred, **kwargs)`` on
    its observed rows; the mean over a task's columns, then over tasks (a column or task with
    nothing observed, or a NaN metric, is left out; NaN when nothing is left). ``metric=None``
    is accuracy for class columns and R² for regression ones: the estimators' ``score``.
    Build one with `make_masked_scorer`."""

    metric: Callable[..., float] | None = None
    response_method: str = "predict"
    sign: float = 1.0
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def _responses(self, estimator: Any, X: Any, fitted: BaseMultiTaskEstimator) -> dict[str, Any]:
        """Per column of ``y``: what ``metric`` compares with the truth."""
        if self.response_method not in ("predict", "predict_proba"):
            raise ValueError(
                f"response_method must be 'predict' or 'predict_proba', got "
                f"{self.response_method!r}"
            )
        names, two_d = fitted.target_names_, fitted.outputs_2d_
        probabilities = [None] * len(names)
        if self.response_method == "predict_proba":
            if not hasattr(estimator, "predict_proba"):
                raise ValueError(f"{type(estimator).__name__} has no predict_proba")
            probabilities = estimator.predict_proba(X) if two_d else [estimator.predict_proba(X)]
        responses: dict[str, Any] = {}
        if any(p is None for p in probabilities):
            predictions = estimator.predict(X)
            predictions = predictions if two_d else predictions[:, None]
            for j, name in enumerate(names):  # an object column (numbers mixed with text) as
                responses[name] = np.asarray(predictions[:, j].tolist())  # its own dtype
        for name, proba in zip(names, probabilities, strict=True):
            if proba is not None:
                responses[name] = proba[:, 1] if proba.shape[1] == 2 else proba
        return responses

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        """``estimator``: a fitted taskmask estimator, or a `Pipeline` / search ending in one."""
        fitted = fitted_estimator(estimator)
        responses = self._responses(estimator, X, fitted)
        n_samples = len(next(iter(responses.values())))
        frame, _ = target_frame(y, n_samples, type(fitted).__name__)
        if tuple(frame.columns) != fitted.target_names_:
            raise ValueError(f"y has columns {list(frame)}; expected {fitted.target_names_}")
        per_task = []
        for entry in fitted.layout_:
            regression = entry.task.spec.targets == "values"
            metric = self.metric or (r2_score if regression else accuracy_score)
            values = []
            for name in entry.columns:
                missing, truth = observed_labels(frame[name], entry.sentinel)
                if not missing.all():
                    values.append(float(metric(truth, responses[name][~missing], **self.kwargs)))
            defined = [v for v in values if not np.isnan(v)]
            if defined:
                per_task.append(float(np.mean(defined)))
        return self.sign * float(np.mean(per_task)) if per_task else float("nan")


def fitted_estimator(estimator: Any) -> BaseMultiTaskEstimator:
    """The taskmask estimator at the end of a `Pipeline` or inside a fitted search."""
    found = estimator
    while not isinstance(found, BaseMultiTaskEstimator):
        if hasattr(found, "steps"):
            found = found.steps[-1][1]
        elif hasattr(found, "best_estimator_"):
            found = found.best_estimator_
        else:
            raise ValueError(f"no taskmask estimator found in {type(estimator).__name__}")
    check_is_fitted(found)
    return found


def make_masked_scorer(
    metric: Callable[..., float],
    *,
    response_method: str = "predict",
    greater_is_better: bool = True,
    **kwargs: Any,
) -> MaskedScorer:
    """A scorer that ignores missing labels (see `MaskedScorer`); ``kwargs`` go to ``metric``.

    ``response_method`` is ``"predict"`` (default) or ``"predict_proba"``: a two-class column
    then gets the positive class's probability, a multiclass column the probability matrix;
    regression columns always get predictions. ``greater_is_better=False`` negates the score,
    as scikit-learn's ``neg_*`` scorers do.

    Example:
        >>> import numpy as np
        >>> from sklearn.metrics import balanced_accuracy_score
        >>> from taskmask.sklearn import MultiTaskClassifier
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> y = np.array([0.0, np.nan, 1.0, 1.0])
        >>> clf = MultiTaskClassifier(hidden=8, epochs=5, random_state=0).fit(X, y)
        >>> scorer = make_masked_scorer(balanced_accuracy_score)
        >>> 0.0 <= scorer(clf, X, y) <= 1.0
        True
    """
    sign = 1.0 if greater_is_better else -1.0
    return MaskedScorer(metric, response_method, sign, dict(kwargs))
