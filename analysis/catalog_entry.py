"""One [[entry]] of a catalog file, validated by a pydantic model: for users' catalog files.

closewatch.analysis.catalog imports this module only to read a user's file
(--catalog, [analysis] catalog): the built-in catalog is validated by its
tests instead, so loading it, which every ingest does, costs no pydantic import
and no model building (issue 16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import polars as pl
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from closewatch.analysis.errors import CatalogError
from closewatch.validation import first_problem
from closewatch.vocabulary import CATEGORIES, ERAS, RETRY_SAFE, SEVERITIES

_MAX_CODE = 65535  # close codes are unsigned 16-bit numbers (RFC 6455)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty text")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if _text(value) not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def _is_code(value: Any) -> bool:
    # bool is a subclass of int in Python, but `true` is not a close code.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_CODE


def _codes(codes: Any) -> list[int]:
    if not isinstance(codes, list) or not codes or not all(_is_code(code) for code in codes):
        raise ValueError(f"{codes!r} must be a non-empty list of whole numbers from 0 to {_MAX_CODE}, like [3008]")
    return codes


def _true_or_false(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} must be true or false")
    return value


def _reason(reason: Any) -> str:
    """Compile the pattern with polars itself: its Rust regex syntax is not Python's."""
    if not isinstance(reason, str) or not reason:
        raise ValueError(f"{reason!r} must be a non-empty regular expression (omit reason to match any reason)")
    try:
        pl.Series([""], dtype=pl.String).str.contains(reason)
    except pl.exceptions.ComputeError as error:
        detail = next((line.strip() for line in str(error).splitlines() if line.strip().startswith("error:")), "")
        raise ValueError(f"{reason!r} is not a valid regular expression ({detail.removeprefix('error: ')})") from None
    return reason


def _code(value: Any) -> int:
    if not _is_code(value):
        raise ValueError(f"{value!r} must be a whole number from 0 to {_MAX_CODE}")
    return value


class CatalogEntry(BaseModel):
    """One [[entry]] of a catalog file; unknown fields are refused (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")

    codes: Annotated[list[int], BeforeValidator(_codes)] | None = None
    code_is_null: Annotated[bool, BeforeValidator(_true_or_false)] = False
    reason: Annotated[str, BeforeValidator(_reason)] | None = None
    infer_code: Annotated[int, BeforeValidator(_code)] | None = None
    category: Annotated[str, BeforeValidator(_one_of(CATEGORIES))]
    severity: Annotated[str, BeforeValidator(_one_of(SEVERITIES))]
    retry_safe: Annotated[str, BeforeValidator(_one_of(RETRY_SAFE))]
    action: Annotated[str, BeforeValidator(_text)]
    era: Annotated[str, BeforeValidator(_one_of(ERAS))]
    docs: Annotated[str, BeforeValidator(_text)]


def validate_entry(raw: Any, where: str) -> dict[str, Any]:
    """Check one [[entry]] table and return it as a row of ``ENTRY_SCHEMA``."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{where} is not a table; write each entry as an [[entry]] table and run again.")
    try:
        entry = CatalogEntry.model_validate(raw)
    except ValidationError as error:
        problem = first_problem(error, CatalogEntry)
        if not problem.field:  # an unknown field
            field = str(error.errors()[0]["loc"][-1])
            _fail(where, field, f"is not a catalog field (the fields are {', '.join(CatalogEntry.model_fields)})")
        _fail(where, problem.field, problem.text)
    if entry.code_is_null and entry.codes is not None:
        _fail(where, "code_is_null", "cannot be true together with codes, since a NULL code is in no list")
    if entry.infer_code is not None and (entry.codes is not None or entry.reason is None):
        _fail(where, "infer_code", "needs an entry with a reason and without codes, since it fills in a missing code")
    return entry.model_dump()


def _fail(where: str, field: str, problem: str) -> NoReturn:
    raise CatalogError(f"{where}: {field} {problem}; fix the entry and run again.")


