"""Which roles a derivation is for (issue 9 item 2): the request's, else the plan's, else the
developer."""

from __future__ import annotations

from td_pipeline.domain.roles import DEFAULT_ROLE, derivation_roles, role_from_text


def test_the_requests_roles_come_first_without_repeats() -> None:
    requested = (role_from_text("DEV"), role_from_text("qa"), role_from_text("developer"))

    assert derivation_roles(requested, (role_from_text("PO"),)) == (
        role_from_text("DEVELOPER"),
        role_from_text("QA"),
    )


def test_no_roles_requested_means_the_plans() -> None:
    plan_roles = (role_from_text("ARCHITECT"), role_from_text("QA"))

    assert derivation_roles((), plan_roles) == plan_roles


def test_neither_the_request_nor_the_plan_naming_a_role_means_the_developer() -> None:
    assert derivation_roles((), ()) == (DEFAULT_ROLE,)
    assert role_from_text("DEVELOPER") == DEFAULT_ROLE
