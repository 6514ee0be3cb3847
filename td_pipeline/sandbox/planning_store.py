"""The Planning stand-in's store and seed: plans, stories, tasks and dependencies in one SQLite
file, shared by the servers, and the sample stories it is seeded with (`data/stories.json`).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS stories (
    plan_id TEXT PRIMARY KEY, story_id TEXT NOT NULL, title TEXT NOT NULL,
    description TEXT NOT NULL, acceptance_criteria TEXT NOT NULL, technical_notes TEXT NOT NULL,
    roles TEXT NOT NULL, context TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT UNIQUE NOT NULL, plan_id TEXT NOT NULL,
    story_id TEXT NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL,
    estimated_hours INTEGER NOT NULL, priority INTEGER NOT NULL, assigned_role TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dependencies (
    plan_id TEXT NOT NULL, story_id TEXT NOT NULL, from_task_id TEXT NOT NULL,
    to_task_id TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (from_task_id, to_task_id)
);
"""


@dataclass(frozen=True, slots=True)
class SampleStory:
    plan_id: str
    story_id: str
    title: str
    description: str
    acceptance_criteria: tuple[str, ...]
    technical_notes: str
    roles: tuple[str, ...]
    context: dict[str, list[str]]


def load_sample_stories(path: Path | None = None) -> tuple[SampleStory, ...]:
    """The seed stories (`data/stories.json` unless another file is given)."""
    if path is None:
        text = resources.files("td_pipeline.sandbox").joinpath("data/stories.json").read_text()
    else:
        text = path.read_text()
    return tuple(
        SampleStory(
            plan_id=item["plan_id"],
            story_id=item["story_id"],
            title=item["title"],
            description=item["description"],
            acceptance_criteria=tuple(item["acceptance_criteria"]),
            technical_notes=item["technical_notes"],
            roles=tuple(item["roles"]),
            context=item["context"],
        )
        for item in json.loads(text)["stories"]
    )


def story_copies(stories: tuple[SampleStory, ...], count: int) -> tuple[SampleStory, ...]:
    """`count` stories cycling through `stories`, each under its own plan and story id
    (for load: the benchmark derives more stories than there are samples)."""
    if count < 1 or not stories:
        raise ValueError("need at least one story to copy and a positive count")
    return tuple(
        dataclasses.replace(
            stories[index % len(stories)],
            plan_id=f"{stories[index % len(stories)].plan_id}-C{index + 1}",
            story_id=f"{stories[index % len(stories)].story_id}-C{index + 1}",
        )
        for index in range(count)
    )


@dataclass(frozen=True, slots=True)
class StoredTask:
    task_id: str
    plan_id: str
    story_id: str
    title: str
    description: str
    estimated_hours: int
    priority: int
    assigned_role: str


@dataclass(frozen=True, slots=True)
class StoredDependency:
    from_task_id: str
    to_task_id: str
    reason: str


class PlanningStore:
    """Plans, stories, tasks and dependencies in one SQLite file, shared by the servers."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)

    def seed(self, stories: tuple[SampleStory, ...]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO stories VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        s.plan_id,
                        s.story_id,
                        s.title,
                        s.description,
                        json.dumps(s.acceptance_criteria),
                        s.technical_notes,
                        json.dumps(s.roles),
                        json.dumps(s.context),
                    )
                    for s in stories
                ],
            )

    def story_of_plan(self, plan_id: str) -> SampleStory | None:
        return self._story("SELECT * FROM stories WHERE plan_id = ?", plan_id)

    def story(self, story_id: str) -> SampleStory | None:
        return self._story("SELECT * FROM stories WHERE story_id = ?", story_id)

    def _story(self, query: str, value: str) -> SampleStory | None:
        with self._lock:
            row = self._db.execute(query, (value,)).fetchone()
        if row is None:
            return None
        return SampleStory(
            plan_id=row["plan_id"],
            story_id=row["story_id"],
            title=row["title"],
            description=row["description"],
            acceptance_criteria=tuple(json.loads(row["acceptance_criteria"])),
            technical_notes=row["technical_notes"],
            roles=tuple(json.loads(row["roles"])),
            context=json.loads(row["context"]),
        )

    def add_task(self, task: StoredTask) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO tasks (task_id, plan_id, story_id, title, description,"
                " estimated_hours, priority, assigned_role) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.task_id,
                    task.plan_id,
                    task.story_id,
                    task.title,
                    task.description,
                    task.estimated_hours,
                    task.priority,
                    task.assigned_role,
                ),
            )

    def tasks(self, story_id: str) -> tuple[StoredTask, ...]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM tasks WHERE story_id = ? ORDER BY seq", (story_id,)
            ).fetchall()
        return tuple(
            StoredTask(
                task_id=row["task_id"],
                plan_id=row["plan_id"],
                story_id=row["story_id"],
                title=row["title"],
                description=row["description"],
                estimated_hours=row["estimated_hours"],
                priority=row["priority"],
                assigned_role=row["assigned_role"],
            )
            for row in rows
        )

    def known_task_ids(self, task_ids: set[str]) -> set[str]:
        with self._lock:
            placeholders = ",".join("?" * len(task_ids))
            rows = self._db.execute(
                f"SELECT task_id FROM tasks WHERE task_id IN ({placeholders})",
                tuple(task_ids),
            ).fetchall()
        return {row["task_id"] for row in rows}

    def save_dependencies(self, plan_id: str, story_id: str, edges: list[StoredDependency]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO dependencies VALUES (?, ?, ?, ?, ?)",
                [(plan_id, story_id, e.from_task_id, e.to_task_id, e.reason) for e in edges],
            )

    def dependencies(self, story_id: str) -> tuple[StoredDependency, ...]:
        with self._lock:
            rows = self._db.execute(
                "SELECT from_task_id, to_task_id, reason FROM dependencies"
                " WHERE story_id = ? ORDER BY rowid",
                (story_id,),
            ).fetchall()
        return tuple(StoredDependency(row[0], row[1], row[2]) for row in rows)
