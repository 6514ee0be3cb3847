"""Which requested role an answer's role means, for `validation`: any spelling `roles` knows,
or an unambiguous prefix; and the warning an answer earns when it spelled the role otherwise
than its canonical name.
"""

from __future__ import annotations

from collections.abc import Sequence

from td_pipeline.domain.answer_model import AnswerWarning, WarningKind
from td_pipeline.domain.roles import canonical_role
from td_pipeline.domain.values import Role, TaskKey, role_spelling


def match_role(answer_role: str, allowed: Sequence[Role]) -> Role | None:
    """The requested role an answer's role means: any spelling of it (`DEV`, `tester`, `QA
    engineer`, see `roles`), or an unambiguous prefix either way round (`DEVOPS_ENG`)."""
    canonical = canonical_role(answer_role)
    if canonical is not None:
        return canonical if canonical in allowed else None
    wanted = role_spelling(answer_role)
    if not wanted:
        return None
    prefixed = [
        role
        for role in allowed
        if role.value.startswith(wanted) or wanted.startswith(f"{role.value}_")
    ]
    return prefixed[0] if len(prefixed) == 1 else None


def _written_as(written: str, role: Role) -> bool:
    try:
        return Role(written) == role
    except ValueError:
        return False


def role_read_loosely(written: str, role: Role, key: TaskKey) -> tuple[AnswerWarning, ...]:
    """A warning when the answer spelled the role otherwise than its canonical name."""
    if _written_as(written, role):
        return ()
    text = f"role {written!r} read as {role.value}"
    return (AnswerWarning(WarningKind.VALUE_READ_LOOSELY, text, (key.value,)),)
