"""Detection thresholds: the documented defaults in ``thresholds.toml``, overridable by a user file.

Thresholds are data, not code: the built-in file documents every key, and a
user file overrides any subset of them. The built-in file also defines the
file's shape: a pydantic model (``extra="forbid"``) is made from it, each key
typed like its default (a whole number is a count of at least 1, a decimal a
number above 0, at most 1 for a ``*share``, text a duration, a list category
names), so a typo fails at start-up with a sentence naming the file, section
and key rather than deep inside a detector.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
import hashlib
from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from closewatch.analysis.errors import AnalysisError
from closewatch.durations import DURATION_EXAMPLES, parse_timedelta
from closewatch.settings import read_toml
from closewatch.validation import first_problem
from closewatch.vocabulary import CATEGORIES

BUILTIN_PATH = Path(__file__).with_name("thresholds.toml")


class Section:
    """One [section] of thresholds with attribute access; durations are ``timedelta``."""

    def __init__(self, name: str, values: dict[str, Any]):
        self._name = name
        self._values = dict(values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"[{self._name}] has no threshold {key!r}") from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


class Thresholds:
    """Every detector's thresholds, by section name (``thresholds["error_spike"].k``)."""

    def __init__(self, sections: dict[str, dict[str, Any]], origin: str):
        self.origin = origin
        self._sections = {name: Section(name, values) for name, values in sections.items()}

    def __getitem__(self, name: str) -> Section:
        return self._sections[name]

    def sections(self) -> list[str]:
        return list(self._sections)

    def fingerprint(self) -> str:
        """md5 of every value: a stored run's findings can be kept only when this has not changed."""
        text = repr(sorted((name, sorted(section.as_dict().items())) for name, section in self._sections.items()))
        return hashlib.md5(text.encode("utf-8")).hexdigest()


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    """The built-in defaults, overridden key by key by the user's file if one is given."""
    model = _model()
    user = _read_toml(Path(path)) if path is not None else {}
    try:
        typed = model.model_validate(user)
    except ValidationError as error:
        raise AnalysisError(f"{path}: {_sentence(error, model)}; fix the file and run again.") from None
    return Thresholds({name: dict(getattr(typed, name)) for name in model.model_fields}, str(path) if path else "builtin")


# ---------------------------------------------------------------- the model, from the built-in file


def _whole(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{value!r} must be a whole number of at least 1")
    return value


def _number(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{value!r} must be a number greater than 0")
    return float(value)


def _share(value: Any) -> float:
    number = _number(value)
    if number > 1:
        raise ValueError(f"{value!r} is a share and must be at most 1 (0.5 means half)")
    return number


def _duration(value: Any) -> timedelta:
    duration = parse_timedelta(value)
    if duration is None or duration <= timedelta(0):
        raise ValueError(f"{value!r} must be a positive duration like {DURATION_EXAMPLES}")
    return duration


def _categories(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{value!r} must be a non-empty list of category names")
    unknown = [v for v in value if v not in CATEGORIES]
    if unknown:
        raise ValueError(f"names unknown category {unknown[0]!r} (see `closewatch catalog`)")
    return value


def _checker(key: str, default: Any) -> Callable[[Any], Any]:
    """The check of a key, chosen by the type of its built-in default."""
    if isinstance(default, list):
        return _categories
    if isinstance(default, str):
        return _duration
    if isinstance(default, int) and not isinstance(default, bool):
        return _whole
    if isinstance(default, float):
        return _share if key.endswith("share") else _number
    raise AnalysisError(f"{BUILTIN_PATH}: [?] {key} has a default of an unsupported type; fix the built-in file.")


@functools.cache
def _model() -> type[BaseModel]:
    """A pydantic model of the whole file: one sub-model per section, every key defaulting to the built-in value."""
    strict = ConfigDict(extra="forbid", validate_default=True)
    sections: dict[str, Any] = {}
    for section, values in _read_toml(BUILTIN_PATH).items():
        fields: dict[str, Any] = {
            key: (Annotated[Any, BeforeValidator(_checker(key, default))], default) for key, default in values.items()
        }
        section_model = create_model(f"Thresholds_{section}", __config__=strict, **fields)
        sections[section] = (section_model, Field(default_factory=section_model))
    return create_model("ThresholdsFile", __config__=ConfigDict(extra="forbid"), **sections)


def _model_sections() -> dict[str, type[BaseModel]]:
    """The section models of ``_model()``, by section name."""
    # cast: pydantic 2.14 types annotation as a TypeForm; the section fields are models (built in _model above)
    return {name: cast(type[BaseModel], field.annotation) for name, field in _model().model_fields.items() if field.annotation is not None}


def _sentence(error: ValidationError, model: type[BaseModel]) -> str:
    """'[section] key <problem>' in the words the thresholds file's users know."""
    detail = error.errors(include_url=False)[0]
    loc, unknown = detail["loc"], detail["type"] == "extra_forbidden"
    section = str(loc[0])
    if unknown and len(loc) == 1:
        return f"[{section}] is not a thresholds section (the sections are {', '.join(model.model_fields)})"
    if len(loc) == 1:
        return f"{section} must be a [{section}] table"
    if unknown:
        keys = ", ".join(_model_sections()[section].model_fields)
        return f"[{section}] {loc[1]} is not a threshold (the keys are {keys})"
    return f"[{section}] {loc[1]} {first_problem(error, model).text}"


def _read_toml(path: Path) -> dict[str, Any]:
    return read_toml(path, AnalysisError, "thresholds file")
