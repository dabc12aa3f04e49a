"""The one exception type that user-facing code raises for bad input, and how pydantic's
validation problems are worded in it (one line per field, led by the field's path)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from typing import Any, get_args

from pydantic import BaseModel, Tag, ValidationError


class TaskmaskError(ValueError):
    """Bad input or configuration; the message names the file, column or task and what was
    expected. The CLI turns it into exit code 2."""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``X | None``, ``tuple[X, ...]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _tagged_member(annotation: Any, tag: str) -> type[BaseModel] | None:
    """The member ``Annotated[X, Tag(tag)]`` of a tagged union, which pydantic names ``tag``
    in error locations (``model.trunk.cnn1d.pool``)."""
    args = get_args(annotation)
    if any(isinstance(arg, Tag) and arg.tag == tag for arg in args[1:]):
        return _model_in(args[0])
    for arg in args:
        found = _tagged_member(arg, tag)
        if found is not None:
            return found
    return None


def _locate(
    loc: Sequence[int | str], raw: Any, root: type[BaseModel]
) -> tuple[str, type[BaseModel] | None]:
    """The YAML path of a pydantic error location, and the model of the mapping it ends in.

    Union-member parts that pydantic adds (``float``, ``tuple[float, ...]``, tags) are left out.
    """
    model: type[BaseModel] | None = root
    annotation: Any = None
    path, node = "", raw
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                path += f" (task {node['name']!r})"
            continue
        field = model.model_fields.get(part) if model is not None else None
        member = _tagged_member(annotation, part) if field is None else None
        if member is not None:
            model = member
            continue
        if field is None and not (model is not None and i == len(loc) - 1):
            break
        path += f".{part}" if path else part
        node = node.get(part) if isinstance(node, dict) else None
        parent, model = model, _model_in(field.annotation) if field is not None else None
        annotation = field.annotation if field is not None else None
        if field is None:
            return path, parent
    return path or "(top level)", model


def _message(item: Mapping[str, Any], model: type[BaseModel] | None) -> tuple[str, str]:
    """What is wrong, and a note on the value found (empty when there is none to show)."""
    key = item["loc"][-1] if item["loc"] else ""
    if item["type"] == "extra_forbidden" and model is not None:
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key; allowed keys: {', '.join(allowed)}{hint}", ""
    message = str(item["msg"]).removeprefix("Value error, ")
    value = item.get("input")
    if item["type"] == "missing" or isinstance(value, dict | list):
        return message, ""
    note = f" (got {value!r})"
    if isinstance(value, bool | int | float) and item["type"] == "string_type":
        note += "; quote it in YAML to make it text"
    return message, note


def _errors(error: ValidationError) -> list[Any]:
    """The errors, less a container's "too short" that only follows from failed items."""
    items = error.errors(include_url=False)
    return [
        item
        for item in items
        if not (
            item["type"] == "too_short"
            and any(
                len(o["loc"]) > len(item["loc"]) and o["loc"][: len(item["loc"])] == item["loc"]
                for o in items
            )
        )
    ]


def validation_message(
    error: ValidationError,
    *,
    source: str | os.PathLike[str],
    root: type[BaseModel],
    raw: Any = None,
    what: str = "invalid config",
) -> str:
    """One line per problem, led by its path from ``root`` (YAML style, ``tasks[1] (task 'x')
    .kind``); a union's alternatives share one line."""
    problems: dict[str, tuple[list[str], str]] = {}
    for item in _errors(error):
        path, model = _locate(item["loc"], raw, root)
        message, note = _message(item, model)
        messages, _ = problems.setdefault(path, ([], note))
        if message not in messages:
            messages.append(message)
    lines = [f"{source}: {what}:"]
    for path, (messages, note) in problems.items():
        lines.append(f"  {path}: {' or '.join(messages)}{note}")
    return "\n".join(lines)


class InvalidFieldsError(TaskmaskError, ValidationError):
    """Invalid fields of a spec built in Python (``Task(...)``), worded as the CLI words a
    config's (`validation_message`). Both ``except TaskmaskError`` (and ``ValueError``) and
    ``except pydantic.ValidationError`` catch it; ``errors()`` is pydantic's."""

    message: str

    def __str__(self) -> str:
        return self.message


def invalid_fields(
    error: ValidationError, *, source: str, root: type[BaseModel], raw: Any = None
) -> InvalidFieldsError:
    """``error`` as an `InvalidFieldsError` whose message names ``source`` and each field."""
    details = error.errors()  # ErrorDetails: InitErrorDetails plus the rendered msg
    wrapped = InvalidFieldsError.from_exception_data(error.title, details)  # type: ignore[arg-type]
    wrapped.message = validation_message(
        error, source=source, root=root, raw=raw, what="invalid fields"
    )
    return wrapped
