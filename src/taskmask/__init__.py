"""taskmask: multi-task learning with missing labels.

A missing label adds nothing to the loss, has exactly zero gradient, does not rescale any other
task, and never counts in a metric.
"""

__version__ = "0.1.0"
