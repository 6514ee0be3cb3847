"""Identifiers and the small value objects a task is made of. Each validates on creation."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, replace


def _has_control_character(text: str) -> bool:
    # Cc: control characters; Cs: lone surrogates (JSON lets them in, UTF-8 cannot carry them).
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


def _identifier(kind: str, value: str, max_length: int) -> str:
    stripped = value.strip()
    if not stripped:
        raise ValueError(f"{kind} must not be blank")
    if len(stripped) > max_length:
        raise ValueError(f"{kind} is longer than {max_length} characters")
    if _has_control_character(stripped):
        raise ValueError(f"{kind} {stripped!r} contains a control character")
    return stripped


def _partition_safe(kind: str, value: str) -> str:
    # Story ids become Dagster partition keys, and Dagster splits partition lists on commas.
    checked = _identifier(kind, value, max_length=200)
    if "," in checked:
        raise ValueError(f"{kind} {checked!r} contains a comma")
    return checked


@dataclass(frozen=True, slots=True)
class PlanId:
    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _partition_safe("plan id", self.value))


@dataclass(frozen=True, slots=True)
class StoryId:
    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _partition_safe("story id", self.value))


@dataclass(frozen=True, slots=True)
class DerivationId:
    """Names one derivation attempt; travels in submissions, events and run tags."""

    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _partition_safe("derivation id", self.value))


@dataclass(frozen=True, slots=True)
class TaskKey:
    """A task's id local to one LLM answer (Planning assigns the real ids)."""

    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _identifier("task key", self.value, max_length=100))


@dataclass(frozen=True, slots=True)
class Title:
    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _identifier("title", self.value, max_length=300))

    @property
    def normalized(self) -> str:
        """Case and white space ignored: how titles are compared and matched."""
        return normalized_title(self.value)


def normalized_title(text: str) -> str:
    """A title with case and white space ignored: how titles are compared and matched."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True, slots=True)
class Description:
    value: str

    def __post_init__(self) -> None:
        if len(self.value) > 20_000:
            raise ValueError("description is longer than 20000 characters")


def _bounded_int(kind: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{kind} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{kind} {value} is outside {low}..{high}")


@dataclass(frozen=True, slots=True)
class EstimatedHours:
    value: int

    def __post_init__(self) -> None:
        _bounded_int("estimated hours", self.value, 1, 1000)


PRIORITY_WORDS = {"critical": 1, "high": 2, "medium": 3, "low": 4}


@dataclass(frozen=True, slots=True)
class Priority:
    """1 is the most urgent."""

    value: int

    def __post_init__(self) -> None:
        _bounded_int("priority", self.value, 1, 10)

    @classmethod
    def from_word(cls, word: str) -> Priority:
        number = PRIORITY_WORDS.get(word.strip().casefold())
        if number is None:
            raise ValueError(f"priority {word!r} is not one of {', '.join(PRIORITY_WORDS)}")
        return cls(number)


_ROLE_PATTERN = re.compile(r"[A-Z][A-Z0-9_]*")


def role_spelling(text: str) -> str:
    """Text in a role name's canonical form: upper case, one `_` for each run of spaces and
    dashes (`"qa  engineer"` and `"QA-Engineer"` are `"QA_ENGINEER"`)."""
    return "_".join(text.replace("-", " ").upper().split())


@dataclass(frozen=True, slots=True)
class Role:
    """A fleet role, canonical upper case: `Role("qa engineer").value == "QA_ENGINEER"`."""

    value: str

    def __post_init__(self) -> None:
        canonical = role_spelling(self.value)
        if not _ROLE_PATTERN.fullmatch(canonical):
            raise ValueError(f"role {self.value!r} is not a role name (letters, digits, _)")
        object.__setattr__(self, "value", canonical)


# --- reading loosely written hours and priorities ----------------------------------------


@dataclass(frozen=True, slots=True)
class ValueReading:
    """How a number an answer wrote loosely was read. `value` is None when the answer gave none
    (`unreadable` False) or gave one that cannot be read (`unreadable` True); `guess`, when not
    empty, says how a value not written as a plain number was understood."""

    value: int | None
    guess: str = ""
    unreadable: bool = False


_MISSING = ValueReading(None)
_UNREADABLE = ValueReading(None, unreadable=True)

_APPROXIMATELY = r"(?P<approx>(?:about|around|approx(?:imately|\.)?|roughly|circa|~|≈)\s*)?"
_AMOUNT = r"\d+(?:[.,]\d+)?|half(?:\s+an?)?|an?|one|two|three|four|five|six|seven|eight|nine|ten"
_HOUR_UNITS = {
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours", "hour(s)"), (1.0, "")),
    **dict.fromkeys(("d", "day", "days", "day(s)"), (8.0, "a day counted as 8 hours")),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks", "week(s)"), (40.0, "a week as 40 hours")),
    **dict.fromkeys(("min", "mins", "minute", "minutes", "minute(s)"), (1 / 60, "minutes")),
}
_HOURS_TEXT = re.compile(
    rf"{_APPROXIMATELY}(?P<low>{_AMOUNT})(?:\s*(?:-|\u2013|\u2014|to|~)\s*(?P<high>{_AMOUNT}))?"
    r"\s*(?P<unit>hours?\(s\)|hours?|hrs?|h|days?\(s\)|days?|d|weeks?\(s\)|weeks?|wks?|w"
    r"|minutes?\(s\)|minutes?|mins?)?\.?",
    re.IGNORECASE,
)
_NUMBER_WORDS = {
    "a": 1.0,
    "an": 1.0,
    "one": 1.0,
    "two": 2.0,
    "three": 3.0,
    "four": 4.0,
    "five": 5.0,
    "six": 6.0,
    "seven": 7.0,
    "eight": 8.0,
    "nine": 9.0,
    "ten": 10.0,
}


def _amount(text: str) -> float:
    word = " ".join(text.casefold().split())
    if word.startswith("half"):
        return 0.5
    return _NUMBER_WORDS.get(word) or float(word.replace(",", "."))


def _number_reading(number: float, what: str) -> ValueReading:
    if not math.isfinite(number):
        return _UNREADABLE
    if number == int(number):
        return ValueReading(int(number))
    return ValueReading(math.ceil(number), guess=what)


def _given_number(value: object) -> ValueReading | None:
    """The reading of a value that is missing, a boolean or a whole number; None otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return _MISSING
    if isinstance(value, bool):
        return _UNREADABLE
    if isinstance(value, int):
        return ValueReading(value)
    return None


def read_hours(value: object, *, unit_required: bool = False) -> ValueReading:
    """Hours from `4`, `"4h"`, `"6 hours"`, `"2-3 hours"` (the upper bound), `"half a day"` (4),
    `"1 day"` (8), `"1 week"` (40), `"90 min"` (2), `"~4h"`. Fractions are rounded up. With
    `unit_required`, a bare number is not taken for hours (free text: `"(QA, 3)"`)."""
    if (given := _given_number(value)) is not None:
        return given
    if isinstance(value, float):
        return _number_reading(value, "a fraction rounded up")
    text = str(value).strip()
    match = _HOURS_TEXT.fullmatch(text.replace("+", ""))
    if match is None or (unit_required and match.group("unit") is None):
        return _UNREADABLE
    factor, unit_guess = _HOUR_UNITS[(match.group("unit") or "h").casefold()]
    high = match.group("high")
    reading = _number_reading(_amount(high or match.group("low")) * factor, "a fraction rounded up")
    guesses = (
        "the upper bound of a range" if high else "",
        unit_guess,
        "an approximate figure" if match.group("approx") else "",
        "a lower bound" if "+" in text else "",
        reading.guess,
    )
    return replace(reading, guess=", ".join(guess for guess in guesses if guess))


_PRIORITY_SYNONYMS = {
    **PRIORITY_WORDS,
    **dict.fromkeys(("urgent", "blocker", "highest"), 1),
    "major": 2,
    **dict.fromkeys(("normal", "med", "moderate"), 3),
    **dict.fromkeys(("minor", "lowest", "trivial"), 4),
}
_PRIORITY_FILLER = frozenset(("priority", "prio", "level"))
_PRIORITY_TOKEN = re.compile(r"p\d+|\d+|[^\W\d_]+")


def _priority_token(token: str) -> tuple[int, str] | None:
    """A token's priority and, for a word, how it was read."""
    if token.isdigit():
        return int(token), ""
    if token[0] == "p" and token[1:].isdigit():
        return int(token[1:]), ""
    if token in _PRIORITY_SYNONYMS:
        return _PRIORITY_SYNONYMS[token], "on the scale critical=1, high=2, medium=3, low=4"
    return None


def read_priority(value: object) -> ValueReading:
    """A priority from `1`, `"2"`, `"P1"`, `"critical"`, `"High (P2)"`. Words map to
    critical=1, high=2, medium=3, low=4. Several readings must agree; `P0` reads as 0, which
    the caller shifts (Planning's priorities start at 1)."""
    if (given := _given_number(value)) is not None:
        return given
    if isinstance(value, float):
        return ValueReading(int(value)) if value.is_integer() else _UNREADABLE
    tokens = [
        t for t in _PRIORITY_TOKEN.findall(str(value).casefold()) if t not in _PRIORITY_FILLER
    ]
    readings = [_priority_token(token) for token in tokens]
    if not readings or None in readings:
        return _UNREADABLE
    numbers = {reading[0] for reading in readings if reading is not None}
    if len(numbers) != 1:
        return _UNREADABLE
    guess = next((reading[1] for reading in readings if reading and reading[1]), "")
    return ValueReading(numbers.pop(), guess=guess)
