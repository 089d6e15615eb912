"""Checking an artifact task's arguments against the schema its ``validation()`` gives.

Dioptra inserts ``validation()`` into a JSON Schema whose ``args`` keep
``additionalProperties: true``, so a misspelt argument reaches ``serialize``
through ``**kwargs`` and is silently ignored. Here the schema is closed
(unknown arguments are refused), arguments ``serialize`` cannot do without
are ``required``, and the schema itself is checked first.
"""

from __future__ import annotations

import inspect
import reprlib
from collections.abc import Mapping
from typing import Any

import orjson

from aliquot import TaskDefinitionError

from ._task import shape_problems

#: Parameters every ``serialize`` takes first; its arguments come after them.
_LEADING = 3
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def required_args(task: type) -> list[str]:
    """Names of the parameters ``serialize`` takes after (working_dir, name, contents) with
    no default: the arguments a serializer name must give."""
    duck: Any = task  # any class with the three static methods
    params = list(inspect.signature(duck.serialize).parameters.values())[_LEADING:]
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in named and p.default is inspect.Parameter.empty]


def args_schema(task: type) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that a task's arguments must pass.

    Raises:
        TaskDefinitionError: ``task`` is not an artifact task, or its
            ``validation()`` does not give a valid schema.
    """
    problems = shape_problems(task)
    if problems:
        raise TaskDefinitionError(f"{task!r} is not an artifact task: {'; '.join(problems)}")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    owner = task.__qualname__
    duck: Any = task  # any class with the three static methods
    try:
        properties = duck.validation()
    except Exception as exc:
        raise TaskDefinitionError(f"{owner}.validation() raised {exc!r}") from exc
    if properties is None:
        properties = {}
    if not isinstance(properties, dict) or not all(isinstance(k, str) for k in properties):
        raise TaskDefinitionError(
            f"{owner}.validation() returned {_repr.repr(properties)}; it must return None or a "
            "dict mapping each argument name to its JSON Schema"
        )
    required = required_args(task)
    undeclared = [name for name in required if name not in properties]
    if undeclared:
        raise TaskDefinitionError(
            f"{owner}.serialize requires argument(s) {undeclared}, which validation() does not "
            "declare, so no arguments could ever pass; add them to validation()"
        )
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "required": required,
    }
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise TaskDefinitionError(
            f"{owner}.validation() is not a valid JSON Schema (draft 2020-12): {exc.message} "
            f"at {where or 'the top'}"
        ) from exc
    return schema


def validate_args(task_cls: type, args: Mapping[str, Any]) -> list[str]:
    """Every problem with ``args`` for the artifact task ``task_cls`` (empty: they are fine).

    Each message names the argument, what its schema expects and the value
    given. Unknown arguments are problems; so are missing ones that
    ``serialize`` has no default for; so is a task whose ``validation()``
    is not a valid schema.
    """
    try:
        schema = args_schema(task_cls)
    except TaskDefinitionError as exc:
        return [str(exc)]
    given: object = args  # callers' types are not checked: ported code passes anything
    if not isinstance(given, Mapping):
        return [f"arguments must be a mapping of names to values, not {_repr.repr(given)}"]
    from jsonschema import Draft202012Validator

    properties: dict[str, Any] = schema["properties"]
    validator = Draft202012Validator(schema)
    problems: list[str] = []
    errors = sorted(
        validator.iter_errors(dict(args)), key=lambda e: ([str(p) for p in e.path], e.validator)
    )
    for error in errors:
        if not error.path and error.validator == "additionalProperties":
            known = sorted(properties) or "none"
            for key in sorted(k for k in args if k not in properties):
                problems.append(
                    f"argument {key!r}: unknown (the schema has additionalProperties: false; "
                    f"known arguments: {known}), got {_repr.repr(args[key])}"
                )
        elif not error.path and error.validator == "required":
            for key in error.validator_value:
                if key not in args:
                    problems.append(
                        f"argument {key!r}: required (serialize has no default for it), "
                        f"expected {_schema_text(properties.get(key, {}))}, got nothing"
                    )
        elif error.path:
            key = str(error.path[0])
            inner = "".join(f"[{p!r}]" for p in list(error.path)[1:])
            problems.append(
                f"argument {key!r}{inner}: expected {error.validator}: "
                f"{_schema_text(error.validator_value)} (schema "
                f"{_schema_text(properties.get(key))}), got {_repr.repr(error.instance)}"
            )
        else:
            problems.append(f"arguments: {error.message}")
    return problems


def check_args(task_cls: type, args: Mapping[str, Any]) -> None:
    """Raise :class:`~aliquot.TaskDefinitionError` listing every problem :func:`validate_args`
    finds."""
    problems = validate_args(task_cls, args)
    if problems:
        raise TaskDefinitionError(
            f"invalid arguments for artifact task {getattr(task_cls, '__qualname__', task_cls)}: "
            + "; ".join(problems)
        )


def _schema_text(bit: Any) -> str:
    try:
        return orjson.dumps(bit, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return _repr.repr(bit)
