"""The application layer: run configs, training runs, the CLI, comparisons, the demo and plots.
Its modules are imported by name (``taskmask.app.cli``, ``taskmask.app.runs``, ...)."""
