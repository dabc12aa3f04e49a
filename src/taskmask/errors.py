"""The one exception type that user-facing code raises for bad input."""


class TaskmaskError(ValueError):
    """Bad input or configuration; the message names the file, column or task and what was
    expected. The CLI turns it into exit code 2."""
