"""Did the change work: Newcombe's interval against published values, the grades on
hand-made and seeded synthetic series."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta

import pytest

from alerts.evidence import (
    Grade,
    ServiceChange,
    change_evidence,
    evidence_for_change,
    newcombe_interval,
    wilson_interval,
)
from alerts.mdc import Rule, WeeklyValue
from alerts.spc import Direction

HIGHER = Direction.HIGHER_IS_BETTER
LOWER = Direction.LOWER_IS_BETTER
MONDAY = date(2026, 1, 5)


def week(i: int) -> date:
    return MONDAY + timedelta(weeks=i)


def weekly(numerators: list[int], denominator: int = 40) -> list[WeeklyValue]:
    return [WeeklyValue(week(i), n, denominator) for i, n in enumerate(numerators)]


def binomial(rng: random.Random, rates: list[float], n: int = 50) -> list[WeeklyValue]:
    return [WeeklyValue(week(i), sum(rng.random() < p for _ in range(n)), n) for i, p in enumerate(rates)]


# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (score, no continuity
# correction), to the 4 decimals published.
NEWCOMBE = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "published"), NEWCOMBE)
def test_newcombe_interval_matches_the_published_values(
    counts: tuple[int, int, int, int], published: tuple[float, float]
) -> None:
    low, high = newcombe_interval(*counts)
    assert (round(low, 4), round(high, 4)) == published


def test_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="3/2"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="trials >= 1"):
        newcombe_interval(0, 0, 1, 2)


# A repeating four-week pattern (27, 30, 26, 29 of 40): no trend, no runs. Its limits: mean 0.7,
# mean moving range 0.0773, process limits 0.494 .. 0.906 (36.2 of 40), two-thirds lines
# 0.563 .. 0.837 (33.5 of 40). A change that does nothing leaves the pattern as it is.
CYCLE = [27, 30, 26, 29]


def test_a_change_with_no_effect_grades_no_signal() -> None:
    ev = change_evidence(weekly(CYCLE * 8), week(16), HIGHER)
    assert ev.grade is Grade.NO_SIGNAL
    assert ev.points_after == 16
    assert ev.first_signal is None
    assert ev.difference == pytest.approx(0.0)
    assert ev.interval is not None
    assert ev.interval[0] < 0 < ev.interval[1]


def test_a_lasting_improvement_grades_sustained_within_seven_plus_three_points() -> None:
    values = weekly(CYCLE * 4 + [34, 35, 33, 36, 34, 35, 34, 36, 33, 35])
    ev = change_evidence(values, week(16), HIGHER)
    assert ev.grade is Grade.SUSTAINED
    assert ev.first_signal == week(16)
    assert ev.weeks_to_signal == 1
    assert ev.signal_rules == (Rule.TWO_OF_THREE, Rule.SHIFT)  # 34 and 35 of 40 beyond the two-thirds line
    assert ev.previous is not None
    assert ev.previous.mean == pytest.approx(28 / 40)
    assert ev.interval is not None
    assert ev.interval[0] > 0


def test_a_short_lived_improvement_grades_signal() -> None:
    values = weekly(CYCLE * 4 + [38, 38, 27, 30, 26, 29, 27, 30])
    ev = change_evidence(values, week(16), HIGHER)
    assert (ev.grade, ev.first_signal, ev.weeks_to_signal) == (Grade.SIGNAL, week(16), 1)


def test_a_change_on_a_wednesday_starts_at_the_next_monday() -> None:
    values = weekly(CYCLE * 4 + [28, 38, 38, 28, 27, 30, 26, 29])
    ev = change_evidence(values, week(15) + timedelta(days=2), HIGHER)
    assert ev.first_week == week(16)
    assert (ev.first_signal, ev.weeks_to_signal) == (week(17), 2)


def test_a_worsening_is_no_signal_of_improvement() -> None:
    values = weekly(CYCLE * 4 + [20] * 8)
    assert change_evidence(values, week(16), HIGHER).grade is Grade.NO_SIGNAL
    assert change_evidence(values, week(16), LOWER).grade is Grade.SUSTAINED


@pytest.mark.parametrize(("after", "grade"), [(6, Grade.TOO_EARLY), (7, Grade.SUSTAINED)])
def test_fewer_than_seven_points_after_is_too_early(after: int, grade: Grade) -> None:
    values = weekly(CYCLE * 4 + [36] * after)
    assert change_evidence(values, week(16), HIGHER).grade is grade


def test_a_change_before_the_data_has_no_baseline() -> None:
    ev = change_evidence(weekly(CYCLE * 4), week(0), HIGHER)
    assert (ev.grade, ev.previous, ev.difference, ev.interval) == (Grade.NO_BASELINE, None, None, None)
    assert change_evidence(weekly(CYCLE * 4), week(1), HIGHER).grade is Grade.NO_BASELINE  # one point: no limits


def test_the_previous_group_starts_at_the_last_rebase_before_the_change() -> None:
    # a rebase at week 8 (a lower process from there): the limits are the lower group's
    values = weekly(CYCLE * 2 + [20, 23, 19, 22] * 2 + [27, 30, 26, 29] * 2)
    ev = change_evidence(values, week(16), HIGHER, rebase=[week(8), week(16)])
    assert ev.previous is not None
    assert ev.previous.mean == pytest.approx(21 / 40)
    assert ev.before == (168, 320)
    assert ev.grade is Grade.SUSTAINED


def test_the_period_after_ends_at_the_next_rebase() -> None:
    values = weekly(CYCLE * 4 + [36] * 8 + CYCLE * 2)
    ev = change_evidence(values, week(16), HIGHER, rebase=[week(24)])
    assert ev.points_after == 8
    assert ev.after == (36 * 8, 40 * 8)


def test_seeded_binomial_series() -> None:
    """Over 200 seeded series: 20 weeks at 60% (50 a week), then 10 weeks at 60% (no effect) or
    at 80% (a lasting improvement). Seen: no effect 167 no_signal, 20 signal, 13 sustained (the
    rules' own false alarms: 7 of 10 points on one side of an estimated mean is not rare);
    lasting improvement 199 sustained, 1 signal."""
    grades_none = []
    grades_better = []
    for seed in range(200):
        rng = random.Random(seed)
        grades_none.append(change_evidence(binomial(rng, [0.6] * 30), week(20), HIGHER).grade)
        better = binomial(rng, [0.6] * 20 + [0.8] * 10)
        grades_better.append(change_evidence(better, week(20), HIGHER).grade)
    assert grades_better.count(Grade.SUSTAINED) >= 195
    assert grades_none.count(Grade.NO_SIGNAL) >= 160
    assert grades_none.count(Grade.SUSTAINED) <= 15


def test_evidence_for_change_takes_each_measure_and_the_expected_direction() -> None:
    series = {("north", "followup_7d"): weekly(CYCLE * 4 + [36] * 8), ("north", "readmission_30d"): weekly(CYCLE * 4 + [36] * 8)}
    directions = {"followup_7d": HIGHER, "readmission_30d": LOWER}
    change = ServiceChange("c1", "north", None, datetime(2026, 4, 27, 9, tzinfo=UTC), "warm hand-offs")
    found = evidence_for_change(change, lambda t, m: series[(t, m)], directions, lambda t: t.date())
    assert {m: e.grade for m, e in found.items()} == {"followup_7d": Grade.SUSTAINED, "readmission_30d": Grade.NO_SIGNAL}
    expected_up = ServiceChange("c2", "north", ("readmission_30d",), change.time, "x", expected_direction=HIGHER)
    found = evidence_for_change(expected_up, lambda t, m: series[(t, m)], directions, lambda t: t.date())
    assert {m: e.grade for m, e in found.items()} == {"readmission_30d": Grade.SUSTAINED}
    with pytest.raises(ValueError, match="timezone-aware"):
        evidence_for_change(
            ServiceChange("c3", "north", None, datetime(2026, 4, 27), "x"),  # noqa: DTZ001 (the error under test)
            lambda t, m: [],
            directions,
            lambda t: t.date(),
        )


def test_evidence_as_a_report_entry() -> None:
    ev = change_evidence(weekly(CYCLE * 4 + [38, 38, 27, 30, 26, 29, 27, 30]), week(16), HIGHER)
    entry = json.loads(json.dumps(ev.as_dict()))
    assert entry["grade"] == "signal"
    assert entry["first_week"] == "2026-04-27"
    assert (entry["first_signal"], entry["weeks_to_signal"], entry["signal_rules"]) == ("2026-04-27", 1, ["beyond_limit"])
    assert entry["before"] == {"numerator": 448, "denominator": 640}
    assert entry["after"] == {"numerator": 245, "denominator": 320}
    assert entry["previous"]["trial"] is False
    assert round(entry["previous"]["mean"], 4) == 0.7
    assert len(entry["interval"]) == 2
