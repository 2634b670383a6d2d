"""Rollout rules without I/O: the route for a record and production, start validation, canary decisions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from retrain.errors import ConfigError
from retrain.serving.rollout import Rollout, Route, Step, VariantStats, apply_step, canary_step, route, validate_start

GUARDS = {
    "min_requests": 100,
    "max_error_rate": 0.02,
    "max_p99_ms": 200.0,
    "metric": "accuracy",
    "max_metric_drop": 0.03,
    "min_labels": 50,
}


def canary(stage: int = 0, stages=(5.0, 25.0, 100.0)) -> Rollout:
    return Rollout("canary", "7", "6", stages[stage], stages, stage, guardrails=GUARDS, seq=3)


def test_route_follows_the_record_only_while_it_applies():
    ab = Rollout("ab", "7", "6", 5.0)
    assert route(None, "6") == Route("single")
    assert route(ab, "6") == Route("ab", "7", 5.0)
    assert route(Rollout("shadow", "7", "6", 100.0), "6") == Route("shadow", "7", 100.0)
    assert route(replace(ab, status="stopped"), "6") == Route("single")
    assert route(replace(ab, share=0.0), "6").mode == "single"
    moved = route(ab, "5")
    assert moved.mode == "single" and "production moved from version 6 to 5" in moved.note
    promoted = route(ab, "7")
    assert promoted.mode == "single" and "candidate version 7 is production now" in promoted.note


def test_start_validation_names_the_bad_value():
    for mode, share, stages, message in [
        ("blue-green", 5, (), "unknown rollout mode 'blue-green'"),
        ("single", 5, (), "unknown rollout mode 'single'"),
        ("ab", None, (), "--share must be a percentage in (0, 100]"),
        ("ab", 0, (), "--share must be a percentage"),
        ("canary", None, (), "--stages must be increasing"),
        ("canary", None, (50.0, 25.0, 100.0), "--stages must be increasing"),
        ("canary", None, (5.0, 5.0, 100.0), "--stages must be increasing"),
        ("canary", None, (5.0, 50.0), "--stages must end at 100"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
            validate_start(mode, share, stages)
    validate_start("ab", 5, ())
    validate_start("canary", None, (5.0, 100.0))
    validate_start("shadow", None, ())


def test_canary_waits_then_advances_then_promotes():
    few = VariantStats(records=40, errors=0, p99_ms=20.0)
    enough = VariantStats(records=100, errors=1, p99_ms=150.0)
    assert canary_step(canary(), few, VariantStats()) == Step(
        "wait", "stage 1/3 (5%): 40/100 candidate records so far", 5.0
    )
    step = canary_step(canary(), enough, VariantStats(records=2000))
    assert step.action == "advance" and step.share == 25.0 and "next 25%" in step.reason
    last = canary_step(canary(2), enough, VariantStats())
    assert last.action == "promote" and last.reason.startswith("stage 3/3 (100%) passed")


def test_canary_breaches_on_errors_latency_and_live_metric():
    # 3 errors out of 10 records: more than 2% of a 100-record stage can allow, so no need to wait
    early = canary_step(canary(), VariantStats(records=10, errors=3), VariantStats())
    assert early.action == "breach" and early.share == 0 and "3 candidate errors in 10 records" in early.reason
    assert canary_step(canary(), VariantStats(records=10, errors=2), VariantStats()).action == "wait"
    assert canary_step(canary(), VariantStats(records=200, errors=3, p99_ms=10), VariantStats()).action == "advance"
    rate = canary_step(canary(), VariantStats(records=100, errors=2, p99_ms=10), VariantStats())
    assert rate.action == "advance"  # exactly at the limit passes
    slow = canary_step(canary(), VariantStats(records=100, p99_ms=250.0), VariantStats())
    assert slow.action == "breach" and "p99 latency 250.0 ms above 200 ms" in slow.reason
    worse = VariantStats(records=60, labelled=60, metric=0.80)
    better = VariantStats(records=600, labelled=600, metric=0.84)
    breach = canary_step(canary(), worse, better)
    assert breach.action == "breach" and "live accuracy 0.8000 on 60 labelled records is 0.0400 below" in breach.reason
    # too few labels, or a drop within the allowance: no breach on the metric
    assert canary_step(canary(), replace(worse, labelled=49), better).action == "wait"
    assert canary_step(canary(), replace(worse, metric=0.82), better).action == "wait"
    # the live metric uses the whole rollout when given, the stage numbers otherwise
    whole = canary_step(canary(), VariantStats(records=5), VariantStats(), worse, better)
    assert whole.action == "breach"


def test_canary_errors_count_against_production_on_the_same_window():
    # 1% of client input neither version can score: the candidate fails it exactly like production does
    healthy = VariantStats(records=500, errors=5, p99_ms=10)
    production = VariantStats(records=9500, errors=95, p99_ms=10)
    assert canary_step(canary(), healthy, production).action == "advance"
    # the case from issue 22: 3/154 candidate errors against production failing the same inputs (80/434)
    early = canary_step(canary(), VariantStats(records=154, errors=3), VariantStats(records=434, errors=80))
    assert early.action == "advance"
    assert canary_step(canary(), VariantStats(records=60, errors=3), VariantStats(records=600, errors=30)).action == (
        "wait"
    )  # 3 errors, 3 expected from production's rate: nothing beyond it
    # a candidate worse than production by more than max_error_rate (0.02 here) breaches, and says both rates
    worse = canary_step(canary(), VariantStats(records=500, errors=20, p99_ms=10), production)
    assert worse.action == "breach"
    assert "candidate error rate 0.0400 (20/500) above production's 0.0100 (95/9500)" in worse.reason
    assert canary_step(canary(), VariantStats(records=500, errors=15, p99_ms=10), production).action == "advance"
    # early: errors beyond production's rate, not raw errors, decide before min_requests records
    assert canary_step(canary(), VariantStats(records=50, errors=3), VariantStats(records=500, errors=25)).action == (
        "wait"
    )
    assert canary_step(canary(), VariantStats(records=50, errors=5), VariantStats(records=500, errors=5)).action == (
        "breach"
    )


def test_apply_step_writes_the_next_record():
    rollout = canary()
    assert apply_step(rollout, Step("wait", "w", 5.0), "t", "me") is None
    advanced = apply_step(rollout, Step("advance", "ok", 25.0), "t1", "me")
    assert (advanced.stage, advanced.share, advanced.stage_started_at, advanced.reason) == (1, 25.0, "t1", "ok")
    breached = apply_step(rollout, Step("breach", "bad", 0.0), "t2", "me")
    assert (breached.status, breached.share, breached.stage) == ("breached", 0.0, 0)
    with pytest.raises(ConfigError, match="promotion goes through the registry"):
        apply_step(rollout, Step("promote", "done", 100.0), "t3", "me")


def test_records_round_trip_through_json():
    rollout = canary(1)
    assert Rollout.from_json(rollout.to_json()) == rollout
    assert VariantStats(records=0).error_rate == 0.0


def test_a_hand_edited_record_turns_the_rollout_off_and_says_why():
    from retrain.serving.state import parse_records, tag_key

    good = Rollout("ab", "7", "6", 5.0, seq=1)
    tags = {
        tag_key(1): good.to_json(),
        tag_key(2): "{not json",
        "retrain.rollout.notes": "ignored",
        "retrain.history.production.000001": "{}",
    }
    records = parse_records(tags)
    assert [r.seq for r in records] == [1, 2] and records[0] == good
    broken = records[1]
    assert (
        broken.status == "unreadable"
        and "rollout record #2 (tag retrain.rollout.000002) is unreadable" in broken.reason
    )
    off = route(broken, "6")
    assert off.mode == "single" and off.note == broken.reason
    wrong_shape = parse_records({tag_key(3): '["a", "list"]', tag_key(4): '{"mode": "ab"}'})
    assert [r.status for r in wrong_shape] == ["unreadable", "unreadable"]
    unknown = route(replace(good, mode="blue-green"), "6")
    assert unknown.mode == "single" and "unknown mode 'blue-green'" in unknown.note


def test_report_spans_run_from_start_to_the_record_that_ended_them_with_one_window_per_canary_stage():
    from datetime import datetime

    from retrain.serving.report import spans

    def at(minute: int) -> str:
        return f"2026-12-03T10:{minute:02d}:00+00:00"

    start = canary()
    records = [
        replace(start, at=at(0), started_at=at(0), stage_started_at=at(0), seq=1),
        replace(start, stage=1, share=25.0, at=at(10), started_at=at(0), stage_started_at=at(10), seq=2),
        replace(
            start, stage=1, share=0.0, status="breached", at=at(15), started_at=at(0), stage_started_at=at(10), seq=3
        ),  # fmt: skip
        Rollout("shadow", "8", "6", 100.0, at=at(20), started_at=at(20), stage_started_at=at(20), seq=4),
        Rollout(
            "shadow", "8", "6", 0.0, status="stopped", at=at(30), started_at=at(20), stage_started_at=at(20), seq=5
        ),  # fmt: skip
        Rollout("ab", "9", "6", 5.0, at=at(40), started_at=at(40), stage_started_at=at(40), seq=6),
    ]
    found = spans(records)
    assert [(s.first.seq, s.latest.seq, s.first.mode) for s in found] == [(1, 3, "canary"), (4, 5, "shadow"),
                                                                          (6, 6, "ab")]  # fmt: skip
    first, shadow, ab = found
    minute = lambda m: datetime(2026, 12, 3, 10, m)  # noqa: E731
    assert (first.start, first.end) == (minute(0), minute(15))  # to the breach, not to now
    assert first.stages == ((0, 5.0, minute(0), minute(10)), (1, 25.0, minute(10), minute(15)))
    assert (shadow.start, shadow.end) == (minute(20), minute(30))
    assert ab.end is None and ab.stages == ((0, 5.0, minute(40), None),)
