"""Reading an operator's prompt template from a file (the domain checks its placeholders)."""

from __future__ import annotations

from pathlib import Path

from td_pipeline.domain.prompt import DEFAULT_TEMPLATE, PromptTemplate


def load_prompt_template(path: str | Path | None) -> PromptTemplate:
    """The template in `path`, versioned by its content; the default when no path is given."""
    if path is None or not str(path).strip():
        return DEFAULT_TEMPLATE
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(
            f"cannot read prompt template {path}: {error.strerror or error}"
        ) from error
    try:
        return PromptTemplate.custom(text)
    except ValueError as error:
        raise ValueError(f"prompt template {path}: {error}") from error
