"""Data: in-memory `MultiTaskData`, Parquet streaming (`ParquetSource`), label coverage and
statistics; tables, images, series, molecules, splits and simulated missingness are public
modules of this package (``taskmask.data.tables``, ``.images``, ``.series``, ``.chem``,
``.splits``, ``.missingness``, ``.auxiliary``).
"""

from taskmask.data._batches import BatchSource, InMemoryBatches
from taskmask.data._coverage import Coverage, label_coverage
from taskmask.data._memory import MultiTaskData, as_inputs, make_data, split
from taskmask.data._stream_stats import LabelStats, label_stats
from taskmask.data._streaming import ParquetSource, StreamedData

__all__ = [
    "BatchSource",
    "Coverage",
    "InMemoryBatches",
    "LabelStats",
    "MultiTaskData",
    "ParquetSource",
    "StreamedData",
    "as_inputs",
    "label_coverage",
    "label_stats",
    "make_data",
    "split",
]
