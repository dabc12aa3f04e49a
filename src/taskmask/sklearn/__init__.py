"""scikit-learn estimators: `MultiTaskClassifier` and `MultiTaskRegressor`, a thin adapter over
`taskmask.fit`, plus `make_masked_scorer` for cross-validation that ignores missing labels.

``Y`` is a 1-D or 2-D array, Series or DataFrame; each column is one output. A missing label is
NaN, None, ``pd.NA`` or a blank string (plus ``sentinel`` when given, or an explicit task's
sentinel). Columns that no entry of ``tasks`` names become one task each, kinds inferred:

- text (strings, objects): ``multiclass``, its classes the sorted observed values;
- `MultiTaskClassifier`: numbers in {0, 1} (or bools) ``binary``, other discrete numbers
  ``multiclass`` (continuous ones are an error, as in scikit-learn);
- `MultiTaskRegressor`: numbers ``regression``.

Class labels are values, never indices: ``predict`` returns the values seen in ``Y``. ``X`` may
be sparse: training and prediction densify one batch of rows at a time. The model trains in
float32; inference runs in float64, so that a row's output does not depend on the rows
predicted with it, and probabilities and regression values are float64.
"""

from taskmask.sklearn._estimators import MultiTaskClassifier, MultiTaskRegressor
from taskmask.sklearn._scoring import MaskedScorer, make_masked_scorer
from taskmask.sklearn._targets import TaskColumns

__all__ = [
    "MaskedScorer",
    "MultiTaskClassifier",
    "MultiTaskRegressor",
    "TaskColumns",
    "make_masked_scorer",
]
