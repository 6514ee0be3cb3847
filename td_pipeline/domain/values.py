"""Identifiers and the small value objects a task is made of. Each validates on creation."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


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
        return " ".join(self.value.casefold().split())


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


@dataclass(frozen=True, slots=True)
class Role:
    """A fleet role, canonical upper case: `Role("qa engineer").value == "QA_ENGINEER"`."""

    value: str

    def __post_init__(self) -> None:
        canonical = "_".join(self.value.replace("-", " ").upper().split())
        if not _ROLE_PATTERN.fullmatch(canonical):
            raise ValueError(f"role {self.value!r} is not a role name (letters, digits, _)")
        object.__setattr__(self, "value", canonical)
