"""A catalogue of malformed and hostile inbound NATS messages with their documented outcome.

The data lives in `cases.json`, one object per case:

- `name`, `subject` (`task.derivation.requested`, `agent.response.completed` or
  `agent.response.failed`);
- the message body, exactly one of: `text` (a string, sent as UTF-8), `json` (a JSON value,
  sent as compact UTF-8 JSON), `base64` (raw bytes, for bodies that are not UTF-8) or
  `generate` (bodies too large to store, built here):
  `{"kind": "concat", "parts": [[text, count], ...]}` repeats and joins text pieces;
  `{"kind": "pad_to", "size": n, "json": value}` serialises `value` and grows its one
  `"__PAD__"` string until the body is exactly `n` bytes;
- `expect`: `refused` (the decoder returns Refused; `reason_contains` is a substring of its
  reason and `ids_readable` says whether both plan and story ids are set, i.e. whether a
  failed event can answer), `not_ours` (NotOurs) or `accepted` (the domain value; for a
  failure report `reason_contains`, when set, is a substring of its reason, and
  `ids_readable` says whether it names plan and story: the executor's real failure names
  only our task id, so only a failure report may be accepted without them);
- optional `correlation` for an accepted answer or failure report: `{"derivation_id": …,
  "attempt": …}` (either may be null), the attempt it was tied to;
- optional `note` (why; for a case whose outcome changed with the contract, why it changed),
  and `known_bug`: the documented outcome is the justified one but the current decoder does
  something else (the tests mark these xfail).

Only the standard library is used, so end-to-end tests can publish the corpus as well.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CASES_FILE = Path(__file__).with_name("cases.json")

REQUESTED = "task.derivation.requested"
AGENT_COMPLETED = "agent.response.completed"
AGENT_FAILED = "agent.response.failed"
SUBJECTS = frozenset({REQUESTED, AGENT_COMPLETED, AGENT_FAILED})
EXPECTATIONS = frozenset({"refused", "not_ours", "accepted"})

_BODY_KINDS = ("text", "json", "base64", "generate")
_PAD = "__PAD__"


@dataclass(frozen=True, slots=True)
class BadMessage:
    name: str
    subject: str
    data: bytes
    expect: str  # "refused" | "not_ours" | "accepted"
    reason_contains: str | None
    ids_readable: bool
    known_bug: str | None = None  # the current code does not meet `expect` (see cases.json)
    note: str = ""
    correlation: tuple[str | None, int | None] | None = None  # (derivation id, attempt)


def load_bad_messages(path: Path = CASES_FILE) -> list[BadMessage]:
    """Every case of the corpus, in file order, with its body built."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of cases")
    return [_case(entry) for entry in raw]


def _case(entry: dict[str, Any]) -> BadMessage:
    name = entry["name"]
    kinds = [kind for kind in _BODY_KINDS if kind in entry]
    if len(kinds) != 1:
        raise ValueError(f"case {name}: needs exactly one of {_BODY_KINDS}, has {kinds}")
    message = BadMessage(
        name=name,
        subject=entry["subject"],
        data=_body(name, kinds[0], entry[kinds[0]]),
        expect=entry["expect"],
        reason_contains=entry.get("reason_contains"),
        ids_readable=bool(entry.get("ids_readable", False)),
        known_bug=entry.get("known_bug"),
        note=entry.get("note", ""),
        correlation=_correlation(entry.get("correlation")),
    )
    _check(message)
    return message


def _correlation(value: Any) -> tuple[str | None, int | None] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"derivation_id", "attempt"}:
        raise ValueError(f"correlation must be {{derivation_id, attempt}}, not {value!r}")
    return value["derivation_id"], value["attempt"]


def _check(message: BadMessage) -> None:
    problem = None
    if message.subject not in SUBJECTS:
        problem = f"unknown subject {message.subject!r}"
    elif message.expect not in EXPECTATIONS:
        problem = f"unknown expectation {message.expect!r}"
    elif message.expect == "refused" and not message.reason_contains:
        problem = "a refusal needs reason_contains"
    elif message.expect == "not_ours" and (message.reason_contains or message.ids_readable):
        problem = "not_ours takes neither reason_contains nor ids_readable"
    elif (
        message.expect == "accepted"
        and not message.ids_readable
        and message.subject != AGENT_FAILED
    ):
        problem = "an accepted request or answer has readable ids"
    elif message.correlation is not None and (
        message.expect != "accepted" or message.subject == REQUESTED
    ):
        problem = "only an accepted answer or failure report has a correlation"
    if problem:
        raise ValueError(f"case {message.name}: {problem}")


def _body(name: str, kind: str, value: Any) -> bytes:
    if kind == "text":
        return str(value).encode("utf-8")
    if kind == "json":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if kind == "base64":
        return base64.b64decode(value, validate=True)
    return _generated(name, value)


def _generated(name: str, spec: dict[str, Any]) -> bytes:
    if spec["kind"] == "concat":
        return b"".join(str(text).encode("utf-8") * int(count) for text, count in spec["parts"])
    if spec["kind"] == "pad_to":
        size = int(spec["size"])
        template = json.dumps(spec["json"], ensure_ascii=False).encode("utf-8")
        if template.count(_PAD.encode()) != 1:
            raise ValueError(f"case {name}: pad_to needs exactly one {_PAD!r} string")
        filler = size - (len(template) - len(_PAD))
        if filler < 0:
            raise ValueError(f"case {name}: the template is already over {size} bytes")
        return template.replace(_PAD.encode(), b"x" * filler)
    raise ValueError(f"case {name}: unknown generator {spec['kind']!r}")
