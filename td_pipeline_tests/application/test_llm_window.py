"""The LLM window: grows while answers are fast, shrinks once per round trip when they queue,
halves on a timeout, never closes nor passes its cap."""

from __future__ import annotations

import pytest

from td_pipeline.application.llm_window import (
    FASTEST_DRIFT,
    INITIAL_LIMIT,
    PREPARED_WINDOWS,
    Answer,
    LlmWindow,
    most_together,
    observe,
    room,
    slots_free,
)

CAP = 256
NOW = 1_000_000.0


def answers(*seconds: float, submitted_at: float = NOW - 10) -> list[Answer]:
    return [Answer(submitted_at, s) for s in seconds]


def test_fast_answers_widen_the_window_by_half_a_job_each() -> None:
    window = observe(LlmWindow(), answers(4.0, 4.1), [], CAP, NOW)
    assert window.limit == INITIAL_LIMIT + 2 * 0.5


def test_slow_start_grows_by_half_at_most_per_round_trip() -> None:
    window = LlmWindow(limit=4, fastest_seconds=4.0, served=8)
    first = observe(window, answers(4.0, 4.0, 4.0), [], CAP, NOW)  # a round starts at 4
    assert first.limit == 5.5
    more = observe(first, answers(4.0, 4.0, 4.0), [], CAP, NOW + 2)  # within the round
    assert more.limit == 6  # 4 x 1.5: the queued jobs' answers may not be back yet
    next_round = observe(more, answers(4.0, 4.0), [], CAP, NOW + 8)  # two fastest later
    assert next_round.limit == 7 and next_round.round_limit == 6
    assert window.fastest_seconds == 4.0


def test_slow_start_grows_to_half_again_the_jobs_the_llm_served_together() -> None:
    # Six jobs handed over together to an LLM of four slots: the four served at once answer
    # first, and fast; the window does not grow on them past 4 x 1.5 before the two queued
    # ones can show the queue.
    window = LlmWindow(limit=6, fastest_seconds=4.0, round_limit=6)
    grown = observe(window, answers(4.0, 4.0, 4.0, 4.0), [], CAP, NOW)
    assert (grown.served, grown.limit) == (4, 6)
    wider = observe(LlmWindow(limit=4, fastest_seconds=4.0), answers(4.0, 4.0, 4.0), [], CAP, NOW)
    assert (wider.served, wider.limit) == (3, 4.5)


def test_past_its_threshold_the_window_grows_only_while_it_is_used() -> None:
    # One slot of 8 s: the window of two held half empty answers fast, and does not grow.
    window = LlmWindow(limit=2.2, fastest_seconds=8.0, threshold=1.5, served=1)
    assert observe(window, answers(8.0), [], CAP, NOW).limit == 2.2
    # A window of one may always try two.
    alone = LlmWindow(limit=1, fastest_seconds=8.0, threshold=1.0, served=1)
    assert observe(alone, answers(8.0), [], CAP, NOW).limit == 2


def test_an_llm_answering_within_a_second_is_not_bound_by_jobs_served_together() -> None:
    # Handed over one after another, each answered before the next: none served together.
    def one_by_one(seconds: float) -> list[Answer]:
        return [Answer(NOW - 20, seconds), Answer(NOW - 20 + seconds + 0.5, seconds)]

    instant = observe(LlmWindow(fastest_seconds=0.05), one_by_one(0.05), [], CAP, NOW)
    assert instant.served == 1 and instant.limit == 3  # slow start, x1.5 a round trip
    slow = observe(LlmWindow(fastest_seconds=4.0), one_by_one(4.0), [], CAP, NOW)
    assert slow.served == 1 and slow.limit == 2  # two were never seen served together


def test_jobs_served_together_are_those_in_flight_at_one_time() -> None:
    one_after_another = [Answer(NOW, 4.0), Answer(NOW + 4, 4.0), Answer(NOW + 8, 4.0)]
    assert most_together(one_after_another) == 1  # handed over as the last one answered
    overlapping = [Answer(NOW, 4.0), Answer(NOW + 1, 4.0), Answer(NOW + 3.9, 4.0)]
    assert most_together(overlapping) == 3
    assert most_together([]) == 0


def test_a_fast_llm_opens_the_window_quickly() -> None:
    window = LlmWindow()
    for tick in range(14):  # fourteen ticks, each answering every job it was given
        fast = answers(*[0.05] * window.jobs_allowed(CAP))
        window = observe(window, fast, [], CAP, NOW + tick)
    assert window.jobs_allowed(CAP) == CAP  # 2, 3, 4, 6, 9, ... x1.5 per round trip


def test_queueing_shows_as_latency_and_shrinks_the_window() -> None:
    window = LlmWindow(limit=20, fastest_seconds=4.0)  # slow: past 1.5 times 4 s
    shrunk = observe(window, answers(9.0, 12.0, 12.0), [], CAP, NOW)
    fastest = 4.0 * FASTEST_DRIFT  # remembered, forgotten a bit
    assert shrunk.fastest_seconds == pytest.approx(fastest)
    assert shrunk.limit == pytest.approx(20 * (1.5 * fastest) / 12)  # by slow / typical
    assert (shrunk.threshold, shrunk.shrunk_at) == (shrunk.limit, NOW)


def test_a_shrink_is_not_repeated_for_jobs_handed_over_before_it() -> None:
    shrunk = observe(LlmWindow(limit=20, fastest_seconds=4.0), answers(12.0), [], CAP, NOW)
    # The queue it saw drains: its older jobs still answer slowly, and change nothing.
    later = observe(shrunk, answers(11.0, submitted_at=NOW - 5), [1.0], CAP, NOW + 5)
    assert later.limit == shrunk.limit
    # A job handed over after the shrink that is still slow shrinks it again.
    again = observe(shrunk, answers(12.0, submitted_at=NOW + 1), [], CAP, NOW + 13)
    assert again.limit < shrunk.limit and again.shrunk_at == NOW + 13


def test_past_its_threshold_the_window_grows_by_one_per_window_of_answers() -> None:
    window = LlmWindow(limit=10, fastest_seconds=4.0, threshold=10, shrunk_at=NOW - 60, served=8)
    grown = observe(window, answers(4.0, 4.0, 4.0, 4.0, 4.0), [], CAP, NOW)
    assert grown.limit == pytest.approx(10.5)


def test_a_tick_shrinks_the_window_by_half_at_most() -> None:
    window = observe(LlmWindow(limit=20, fastest_seconds=4.0), answers(59.0), [], CAP, NOW)
    assert window.limit == 10


def test_a_timeout_halves_the_window() -> None:
    window = LlmWindow(limit=12, fastest_seconds=4.0)
    assert observe(window, answers(4.0), [NOW - 60], CAP, NOW).limit == 6


def test_the_window_never_closes_nor_passes_the_cap() -> None:
    assert observe(LlmWindow(limit=1.5), [], [NOW - 60], CAP, NOW).limit == 1
    assert observe(LlmWindow(limit=3), answers(*[0.1] * 10), [], 4, NOW).limit == 4
    assert LlmWindow(limit=300).jobs_allowed(cap=4) == 4


def test_a_slower_model_is_learnt_once_the_window_is_down_to_one_job() -> None:
    window = LlmWindow(limit=4, fastest_seconds=1.0)
    for tick in range(2):  # 8 s answers: slow for a 1 s model, the window halves, twice
        window = observe(window, answers(8.0, submitted_at=NOW + tick), [], CAP, NOW + tick)
    assert window.limit == 1
    window = observe(window, answers(8.0, submitted_at=NOW + 5), [], CAP, NOW + 13)
    assert window.fastest_seconds == 8.0  # at one job nothing of ours queued: the LLM's time
    assert window.limit == 1 + 1 / 1  # and the window opens again, past its threshold slowly


def test_room_is_the_window_and_more_prepared_ahead_less_what_is_in_flight() -> None:
    ahead = 1 + PREPARED_WINDOWS
    assert room(LlmWindow(limit=8.7), in_flight=5, cap=CAP) == ahead * 8 - 5
    assert room(LlmWindow(limit=8), in_flight=ahead * 8 + 1, cap=CAP) == 0
    assert room(LlmWindow(limit=8), in_flight=0, cap=2) == ahead * 2


def test_with_a_window_being_prepared_the_next_run_waits_to_carry_a_whole_batch() -> None:
    window, full = LlmWindow(limit=4), (1 + PREPARED_WINDOWS) * 4
    # 4 at the executor, 4 being prepared: room for 3 is not yet a batch of 4.
    assert room(window, in_flight=full - 3, cap=CAP, preparing=4, batch_size=50) == 0
    assert room(window, in_flight=full - 4, cap=CAP, preparing=4, batch_size=50) == 4
    assert room(window, in_flight=full - 2, cap=CAP, preparing=4, batch_size=2) == 2
    # Less than a window being prepared: whatever fits goes, so the executor never runs dry,
    # and a lone request on an idle pipeline goes at once.
    assert room(window, in_flight=full - 1, cap=CAP, preparing=3, batch_size=50) == 1
    assert room(window, in_flight=0, cap=CAP, preparing=0, batch_size=50) == full


def test_a_slot_is_free_when_the_executor_and_the_runs_ahead_leave_one() -> None:
    assert slots_free(LlmWindow(limit=4.5), at_executor=2, ahead=1, cap=CAP) == 1
    assert slots_free(LlmWindow(limit=4), at_executor=2, ahead=2, cap=CAP) == 0
    assert slots_free(LlmWindow(limit=4), at_executor=5, ahead=0, cap=CAP) == 0
    assert slots_free(LlmWindow(limit=8), at_executor=0, ahead=0, cap=3) == 3


def test_a_tick_without_answers_changes_nothing() -> None:
    window = LlmWindow(limit=7, fastest_seconds=3.0)
    assert observe(window, [], [], CAP, NOW) is window


def test_an_invalid_window_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LlmWindow(limit=0.5)
    with pytest.raises(ValueError, match="before its submission"):
        LlmWindow(fastest_seconds=-1)


def test_slow_start_ends_when_answers_begin_to_queue() -> None:
    window = LlmWindow(limit=6, fastest_seconds=4.0, served=6)  # no congestion met yet
    ended = observe(window, answers(5.7, 5.8, 5.9), [], CAP, NOW)  # a quarter slower and more
    assert (ended.limit, ended.threshold) == (6, 6)
    later = observe(ended, answers(4.0, 4.0, 4.0), [], CAP, NOW + 5)
    assert later.limit == pytest.approx(6 + 3 / 6)  # from there one job per window of answers


def test_a_fast_llm_does_not_leave_slow_start_for_its_noise() -> None:
    window = LlmWindow(limit=6, fastest_seconds=0.05, served=6)
    grown = observe(window, answers(0.3, 0.5, 0.4), [], CAP, NOW)
    assert grown.threshold is None and grown.limit == 6 + 3 * 0.5
