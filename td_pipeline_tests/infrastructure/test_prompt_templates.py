from __future__ import annotations

from pathlib import Path

import pytest

from td_pipeline.domain.prompt import DEFAULT_TEMPLATE
from td_pipeline.infrastructure.prompt_templates import load_prompt_template


def test_no_path_means_the_default_template() -> None:
    assert load_prompt_template(None) is DEFAULT_TEMPLATE
    assert load_prompt_template("") is DEFAULT_TEMPLATE


def test_a_template_file_is_loaded_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text("Criteria:\n$acceptance_criteria\n$allowed_roles\n$answer_format\n")

    template = load_prompt_template(path)

    assert template.text.startswith("Criteria:")
    assert template.version.startswith("custom-")


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("only $title\n")
    with pytest.raises(ValueError, match=r"broken\.txt: prompt template lacks"):
        load_prompt_template(broken)
    with pytest.raises(ValueError, match="cannot read prompt template"):
        load_prompt_template(tmp_path / "missing.txt")
