"""Turn a pydantic ``ValidationError`` into the words of one sentence for the user.

The TOML files users write (closewatch.toml, the catalog, the thresholds)
are validated by pydantic models with ``extra="forbid"``; each loader adds
the file, the line or the entry's name, so that the error is one sentence
naming the entry and the field, as every other closewatch error is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

#: pydantic's error types, in the words closewatch's messages use.
_WORDS = {
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "missing": "is missing",
    "path_type": "must be a file path (text)",
}


@dataclass(frozen=True)
class Problem:
    """The first thing wrong: where (the keys from the top of the file) and what, in words."""

    loc: tuple[int | str, ...]
    field: str  # the key at fault ('' when the problem is the whole table)
    text: str  # e.g. "must be a whole number, not 'five'" or "has no setting 'x' (known: a, b)"


def first_problem(error: ValidationError, model: type[BaseModel]) -> Problem:
    """The first error of ``error`` (raised validating ``model``) as a Problem."""
    detail = error.errors(include_url=False)[0]
    loc = tuple(detail["loc"])
    if detail["type"] == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        listed = f" (known: {', '.join(known)})" if known else ""
        return Problem(loc[:-1], "", f"has no setting {loc[-1]!r}{listed}")
    field = str(loc[-1]) if loc else ""
    return Problem(loc, field, _words(detail))


def problem_sentence(error: ValidationError, model: type[BaseModel]) -> str:
    """'[section] key must be ...' for settings-like files whose top level is a table of tables."""
    problem = first_problem(error, model)
    where = f"[{problem.loc[0]}] " if problem.loc else ""
    field = f"{problem.field} " if problem.field and len(problem.loc) > 1 else ""
    return f"{where}{field}{problem.text}"


def describe(detail: Any) -> str:
    """One error of ``ValidationError.errors()`` in closewatch's words ("must be a whole number, not 'five'")."""
    return _words(detail)


def _words(detail: Any) -> str:
    kind = detail["type"]
    if kind == "value_error":
        return str(detail["ctx"]["error"])
    if kind == "missing":
        return "is missing"
    words = _WORDS.get(kind) or _describe(detail["msg"])
    if "input" in detail and kind != "missing":
        words += f", not {detail['input']!r}"
    return words


def _describe(message: str) -> str:
    """pydantic's own message ('Input should be greater than 0') as 'must be greater than 0'."""
    return message.replace("Input should be", "must be").replace("Value error, ", "")


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The TOML keys the model at ``loc`` accepts (aliases where they exist)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        match = next((f for name, f in fields.items() if part in (name, f.alias)), None)
        if match is None:
            return []
        current = _model_of(match.annotation)
    fields = getattr(current, "model_fields", {})
    return [f.alias or name for name, f in fields.items()]


def _model_of(annotation: Any) -> Any:
    """The BaseModel inside ``Model``, ``list[Model]``, ``Model | None``, or the annotation itself."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_of(argument)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation
