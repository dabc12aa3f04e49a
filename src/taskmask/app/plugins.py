"""A run config's ``plugins:``: the modules to import before its tasks are validated, so that
task kinds they register (`taskmask.register_kind`) can be used from the command line.

A config is the user's own code, as a script is: its plugins are imported by module name from
``sys.path`` (an installed package, or a module on ``PYTHONPATH``). Model files
(``model.json``, ``model.safetensors``) never import anything: a kind they name must already be
registered when they are loaded.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from taskmask.errors import TaskmaskError

logger = logging.getLogger("taskmask")


def import_plugins(raw: Any, source: str | Path) -> tuple[str, ...]:
    """Import the modules listed under ``plugins`` of the raw config ``raw`` (read from
    ``source``); returns their names. `TaskmaskError` naming the file and the module when one
    is not a module name or cannot be imported."""
    names = raw.get("plugins", ()) if isinstance(raw, dict) else ()
    if names is None:
        return ()
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise TaskmaskError(
            f"{source}: plugins: expected a list of module names, e.g. [my_kinds], got {names!r}"
        )
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise TaskmaskError(
                f"{source}: plugins: cannot import {name!r} ({error}); a plugin is imported "
                "by module name from sys.path (install it, or put its folder on PYTHONPATH)"
            ) from None
        logger.debug("imported plugin %s", name)
    return tuple(names)
