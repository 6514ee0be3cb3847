"""The fleet's roles: one canonical name each, every spelling peers and models use for it, and
the name each peer expects back (contracts.md §1.3b).

Canonical names are what the prompt, the answer check and the UI show. Planning stores only
DEV, QA, ARCHITECT and PO (its role mapper turns anything else into DEV), and the executor's
agents are DEV, QA, ARCHITECT, DEVOPS and DATA: the mappers below translate at the edge."""

from __future__ import annotations

from collections.abc import Sequence

from td_pipeline.domain.values import Role, role_spelling

DEVELOPER = Role("DEVELOPER")
QA = Role("QA")
ARCHITECT = Role("ARCHITECT")
DEVOPS = Role("DEVOPS")
DATA_ENGINEER = Role("DATA_ENGINEER")
PRODUCT_OWNER = Role("PRODUCT_OWNER")
PRODUCT_MANAGER = Role("PRODUCT_MANAGER")
SECURITY = Role("SECURITY")
DESIGNER = Role("DESIGNER")
SYSTEM = Role("SYSTEM")

DEFAULT_ROLE = DEVELOPER

# Every spelling, in `Role`'s canonical form (upper case, `_` for spaces and dashes).
_SPELLINGS: dict[Role, tuple[str, ...]] = {
    DEVELOPER: (
        "DEVELOPER",
        "DEV",
        "DEVS",
        "DEVELOPERS",
        "ENGINEER",
        "SWE",
        "SOFTWARE_ENGINEER",
        "SOFTWARE_DEVELOPER",
        "PROGRAMMER",
        "CODER",
        "BACKEND",
        "BACKEND_DEVELOPER",
        "BACKEND_ENGINEER",
        "BACK_END_DEVELOPER",
        "FRONTEND",
        "FRONTEND_DEVELOPER",
        "FRONTEND_ENGINEER",
        "FRONT_END_DEVELOPER",
        "FULLSTACK_DEVELOPER",
        "FULL_STACK_DEVELOPER",
        "FULLSTACK_ENGINEER",
        "MOBILE_DEVELOPER",
        "FULL_STACK_ENGINEER",
        "BACK_END_ENGINEER",
        "FRONT_END_ENGINEER",
        "WEB_DEVELOPER",
        "IOS_DEVELOPER",
        "ANDROID_DEVELOPER",
        "APPLICATION_DEVELOPER",
        "SENIOR_DEVELOPER",
        "SENIOR_ENGINEER",
        "SENIOR_SOFTWARE_ENGINEER",
        "SENIOR_BACKEND_DEVELOPER",
        "SENIOR_BACKEND_ENGINEER",
        "SENIOR_FRONTEND_DEVELOPER",
        "SENIOR_FRONTEND_ENGINEER",
        "LEAD_DEVELOPER",
    ),
    QA: (
        "QA",
        "TESTER",
        "TEST",
        "TESTING",
        "QE",
        "QA_ENGINEER",
        "QA_TESTER",
        "TEST_ENGINEER",
        "QUALITY_ENGINEER",
        "QUALITY_ASSURANCE",
        "SDET",
        "QA_ANALYST",
        "QA_AUTOMATION_ENGINEER",
        "TEST_AUTOMATION_ENGINEER",
        "AUTOMATION_TESTER",
        "QUALITY_ASSURANCE_ENGINEER",
        "SENIOR_QA_ENGINEER",
        "MANUAL_TESTER",
        "SOFTWARE_TESTER",
    ),
    ARCHITECT: ("ARCHITECT", "ARCH", "SOFTWARE_ARCHITECT", "SOLUTIONS_ARCHITECT", "TECH_LEAD"),
    DEVOPS: (
        "DEVOPS",
        "OPS",
        "SRE",
        "DEVOPS_ENGINEER",
        "PLATFORM_ENGINEER",
        "INFRASTRUCTURE",
        "SITE_RELIABILITY_ENGINEER",
        "INFRASTRUCTURE_ENGINEER",
        "CLOUD_ENGINEER",
        "RELEASE_ENGINEER",
    ),
    DATA_ENGINEER: ("DATA_ENGINEER", "DATA", "DATA_SCIENTIST", "ANALYTICS_ENGINEER"),
    PRODUCT_OWNER: ("PRODUCT_OWNER", "PO"),
    PRODUCT_MANAGER: ("PRODUCT_MANAGER", "PM"),
    SECURITY: ("SECURITY", "SEC", "SECURITY_ENGINEER", "APPSEC", "SECURITY_ANALYST"),
    DESIGNER: (
        "DESIGNER",
        "UX",
        "UI",
        "UX_DESIGNER",
        "UI_DESIGNER",
        "UI_UX_DESIGNER",
        "UX_UI_DESIGNER",
        "PRODUCT_DESIGNER",
    ),
    SYSTEM: ("SYSTEM",),
}
_BY_SPELLING: dict[str, Role] = {
    spelling: role for role, spellings in _SPELLINGS.items() for spelling in spellings
}

CANONICAL_ROLES: frozenset[Role] = frozenset(_SPELLINGS)

# Planning's RoleType values; its role mapper stores anything else as DEV.
_PLANNING_NAMES: dict[Role, str] = {
    DEVELOPER: "DEV",
    QA: "QA",
    ARCHITECT: "ARCHITECT",
    PRODUCT_OWNER: "PO",
}
# The executor's agent roles.
_AGENT_NAMES: dict[Role, str] = {
    DEVELOPER: "DEV",
    QA: "QA",
    ARCHITECT: "ARCHITECT",
    DEVOPS: "DEVOPS",
    DATA_ENGINEER: "DATA",
}


def _spelling(text: str) -> str:
    return role_spelling(text.replace("/", " "))


def canonical_role(text: str) -> Role | None:
    """The canonical role a spelling means (`"dev"`, `"QA Engineer"`, `"PO"`), or None."""
    return _BY_SPELLING.get(_spelling(text))


def role_from_text(text: str) -> Role:
    """The canonical role for a known spelling, else the text as a role name (which a
    derivation may still refuse as unknown). Raises ValueError for text that is no name."""
    return canonical_role(text) or Role(text)


def planning_role_name(role: Role) -> str:
    """The role name Planning stores for a task of this role."""
    return _PLANNING_NAMES.get(role, "DEV")


def agent_role_name(role: Role) -> str:
    """The executor agent role that takes a derivation asked for this role."""
    return _AGENT_NAMES.get(role, "DEV")


def derivation_roles(requested: Sequence[Role], plan_roles: Sequence[Role]) -> tuple[Role, ...]:
    """The roles a derivation is for: the request's, else the plan's, else the developer."""
    return tuple(dict.fromkeys(requested or plan_roles or (DEFAULT_ROLE,)))
