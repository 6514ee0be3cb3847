"""Every case of the bad-message corpus gets its documented outcome from the decoders.

The corpus (td_pipeline_tests/corpus/bad_messages/cases.json) is a data-driven catalogue of
malformed and hostile inbound messages; test_nats_mappers covers the decoders' normal paths.
Cases with a `known_bug` document the justified outcome the current code misses: strict xfail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from td_pipeline.domain.derivation import DerivationRequest, LlmAnswer, LlmFailureReport
from td_pipeline.infrastructure.nats_mappers import (
    MAX_PAYLOAD_BYTES,
    NotOurs,
    Refused,
    decode_agent_failure,
    decode_agent_response,
    decode_request,
)
from td_pipeline_tests.corpus.bad_messages import (
    AGENT_COMPLETED,
    AGENT_FAILED,
    REQUESTED,
    BadMessage,
    load_bad_messages,
)

Decoded = DerivationRequest | LlmAnswer | LlmFailureReport | NotOurs | Refused

DECODERS: dict[str, Callable[[bytes], Decoded]] = {
    REQUESTED: decode_request,
    AGENT_COMPLETED: decode_agent_response,
    AGENT_FAILED: decode_agent_failure,
}
ACCEPTED_AS: dict[str, type[DerivationRequest | LlmAnswer | LlmFailureReport]] = {
    REQUESTED: DerivationRequest,
    AGENT_COMPLETED: LlmAnswer,
    AGENT_FAILED: LlmFailureReport,
}

CASES = load_bad_messages()


def _param(case: BadMessage) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=case.known_bug)] if case.known_bug else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_bad_message_gets_its_documented_outcome(case: BadMessage) -> None:
    outcome = DECODERS[case.subject](case.data)

    if case.expect == "refused":
        assert isinstance(outcome, Refused), outcome
        assert case.reason_contains is not None
        assert case.reason_contains in outcome.reason, outcome.reason
        readable = outcome.plan_id is not None and outcome.story_id is not None
        assert readable == case.ids_readable, outcome
    elif case.expect == "not_ours":
        assert isinstance(outcome, NotOurs), outcome
    else:
        assert isinstance(outcome, ACCEPTED_AS[case.subject]), outcome
        if isinstance(outcome, LlmFailureReport):
            readable = outcome.plan_id is not None and outcome.story_id is not None
            assert readable == case.ids_readable, outcome
        if case.reason_contains is not None:
            assert isinstance(outcome, LlmFailureReport)
            assert case.reason_contains in outcome.reason, outcome.reason
        if case.correlation is not None:
            assert isinstance(outcome, LlmAnswer | LlmFailureReport)
            derivation = outcome.derivation_id.value if outcome.derivation_id else None
            assert (derivation, outcome.attempt) == case.correlation, outcome


def test_the_corpus_is_large_varied_and_uniquely_named() -> None:
    assert len(CASES) >= 130
    duplicates = [name for name, count in Counter(c.name for c in CASES).items() if count > 1]
    assert duplicates == []
    by_subject = Counter(case.subject for case in CASES)
    assert set(by_subject) == set(DECODERS)
    assert by_subject[REQUESTED] >= 30
    assert {case.expect for case in CASES} == {"refused", "not_ours", "accepted"}
    accepted = [case for case in CASES if case.expect == "accepted" and not case.known_bug]
    assert all(case.note for case in accepted), "say why each accepted case is tolerated"
    assert len(accepted) <= len(CASES) // 5
    # The executor's real failure names only our task id: some are accepted without ids.
    assert any(case.subject == AGENT_FAILED and not case.ids_readable for case in accepted)
    correlated = [case for case in accepted if case.correlation is not None]
    assert {case.subject for case in correlated} == {AGENT_COMPLETED, AGENT_FAILED}


def test_cases_whose_outcome_changed_with_the_contract_say_why() -> None:
    changed = [case for case in CASES if "contract change" in case.note]
    assert len(changed) >= 12
    # Refused requests keep their ids exactly as sent, commas and control characters too.
    readable_now = {"req_story_id_comma", "req_plan_id_comma", "req_story_id_newline"}
    assert readable_now <= {case.name for case in changed if case.ids_readable}


def test_oversize_cases_are_one_byte_over_the_limit() -> None:
    oversize = [case for case in CASES if case.reason_contains == "limit"]
    assert {case.subject for case in oversize} == set(DECODERS)
    assert all(len(case.data) == MAX_PAYLOAD_BYTES + 1 for case in oversize)
    at_limit = [case for case in CASES if len(case.data) == MAX_PAYLOAD_BYTES]
    assert at_limit and all(case.expect == "accepted" for case in at_limit)
