"""Screenshot a story's task graph as the Dagster UI shows it (headless Chromium).

    python scripts/screenshot_story.py STORY-REFUNDS [--ui http://127.0.0.1:3000] [--out FILE]
        [--asset task_graph] [--partition-page]

Needs a running UI (`make demo`), Debian's chromium (`apt install chromium`) and
`pip install playwright` (its own browsers are not needed). The PNG stays out of the repo."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("story")
    parser.add_argument("--ui", default="http://127.0.0.1:3000")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--asset", default="task_graph", help="the asset whose partition to show")
    parser.add_argument(
        "--partition-page",
        action="store_true",
        help="the partition's page as it opens (status, run, metadata), without opening the "
        "task table and graph picture",
    )
    args = parser.parse_args()
    out = args.out or Path(f"{args.story}-{args.asset.replace('_', '-')}.png")
    url = f"{args.ui}/assets/{args.asset}?view=partitions&partition={args.story}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.goto(url, wait_until="networkidle")
        with contextlib.suppress(Exception):  # the first-visit community dialog, if shown
            page.get_by_role("button", name="Skip").click(timeout=3_000)
        if args.partition_page:
            page.get_by_text("Materialized", exact=False).first.wait_for(timeout=15_000)
        else:
            # The task table and the graph picture are one markdown entry: open it.
            page.get_by_text("[Show Markdown]").last.click(timeout=15_000)
        page.wait_for_timeout(1_500)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
