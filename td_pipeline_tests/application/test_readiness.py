"""The readiness decision behind /ready."""

from td_pipeline.application.readiness import Check, Readiness, daemon_check


def test_the_daemon_is_ready_when_every_required_daemon_beat_recently() -> None:
    check = daemon_check(["SENSOR", "SCHEDULER"], {"SENSOR": 3.0, "SCHEDULER": 29.0}, 60)
    assert check == Check("daemon", True)


def test_a_missing_or_old_heartbeat_is_named() -> None:
    check = daemon_check(["SENSOR", "SCHEDULER"], {"SCHEDULER": 200.0}, 60)
    assert not check.ok
    assert "SENSOR (no heartbeat)" in check.detail and "SCHEDULER (200s ago)" in check.detail
    assert not daemon_check([], {}, 60).ok


def test_readiness_is_every_check_and_says_what_is_not_ready() -> None:
    readiness = Readiness(
        (Check("nats", True), Check("planning", False, "127.0.0.1:1: UNAVAILABLE"))
    )
    assert not readiness.ready
    assert readiness.text() == "ok nats\nNOT READY planning: 127.0.0.1:1: UNAVAILABLE\n"
    assert Readiness((Check("nats", True),)).ready
