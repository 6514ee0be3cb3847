"""The README and docs/ hold together: every relative link in README.md and docs/*.md points at
a file of the repository (and, with a `#fragment`, at one of its headings), and every page of
docs/ is linked from the README, which is the first screen that leads to them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
PAGES = sorted([README, *DOCS.glob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose(markdown: str) -> str:
    """The text outside fenced code blocks and code spans, where a link is a link."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def link_targets(markdown: str) -> list[str]:
    text = prose(markdown)
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def anchors(markdown: str) -> set[str]:
    """The fragments GitHub gives the headings: lower case, punctuation dropped, spaces as
    dashes, a repeated heading numbered."""
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file, or heading, is not there."""
    problems = []
    for target in link_targets(page.read_text()):
        if EXTERNAL.match(target):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked.read_text()):
            problems.append(f"{target}: no heading #{fragment} in {linked.name}")
    return problems


def test_links_are_found_outside_code_and_checked(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# There\n\n## Its `part` (two)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [part](there.md#its-part-two) [self](#page) [web](https://example.com)\n"
        "[gone](missing.md) [bad part](there.md#nowhere)\n"
        "`[in code](also-missing.md)`\n\n```\n[in a block](missing-too.md)\n```\n\n"
        "[ref]: gone-too.md\n\n# Page\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "there.md#nowhere: no heading #nowhere in there.md",
        "gone-too.md: no such file",
    ]


def test_docs_exist() -> None:
    assert list(DOCS.glob("*.md")), "docs/ holds no page"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_points_at_a_file_of_the_repository(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda page: page.name)
def test_every_docs_page_is_linked_from_the_readme(page: Path) -> None:
    linked = {
        (REPO / target.partition("#")[0]).resolve()
        for target in link_targets(README.read_text())
        if not EXTERNAL.match(target)
    }
    assert page.resolve() in linked, f"README.md does not link docs/{page.name}"
