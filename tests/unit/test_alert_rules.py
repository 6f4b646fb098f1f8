"""Churn rules: RateOffTarget, SpecialCause findings and the system-alert lifecycle."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from alerts.model import Status
from alerts.rules import (
    RATE_OFF_TARGET,
    SPECIAL_CAUSE,
    AlertRulesConfig,
    Finding,
    SystemAlertRules,
    parse_rebase,
    rate_finding,
    special_cause_finding,
    system_findings,
    transitions,
)
from pathwatch import parts
from pathwatch.config import Settings
from tests.fixtures.alerts import Point, Row

T0 = datetime(2025, 4, 7, tzinfo=UTC)
MONDAY = date(2025, 1, 6)






def weeks(pairs: list[tuple[int, int]], start: date = MONDAY) -> list[Point]:
    return [Point(start + timedelta(weeks=i), n, d) for i, (n, d) in enumerate(pairs)]


@pytest.mark.parametrize(
    ("measure", "numerator", "denominator", "target", "fires"),
    [
        ("followup_7d", 6, 10, 0.70, True),  # 60% < 70%
        ("followup_7d", 7, 10, 0.70, False),  # exactly on target meets it
        ("followup_7d", 8, 10, 0.70, False),
        ("followup_7d", 5, 9, 0.70, False),  # denominator under the minimum of 10
        ("followup_7d", 0, 0, 0.70, False),
        ("readmission_30d", 3, 10, 0.20, True),  # lower is better: 30% > 20%
        ("readmission_30d", 2, 10, 0.20, False),
        ("readmission_30d", 1, 10, 0.20, False),
    ],
)
def test_rate_off_target(measure: str, numerator: int, denominator: int, target: float, fires: bool) -> None:
    finding = rate_finding("north", measure, numerator, denominator, target, 10, 28, "https://runbook")
    assert (finding is not None) is fires
    if finding is not None:
        assert finding.key == (RATE_OFF_TARGET, "north", measure)
        assert f"{numerator} of {denominator}" in finding.annotations["description"]
        assert finding.annotations["runbook_url"] == "https://runbook"


def test_rate_off_target_text_shows_the_numbers() -> None:
    finding = rate_finding("north", "followup_7d", 9, 16, 0.70, 10, 28)
    assert finding is not None
    assert finding.annotations["summary"] == "followup_7d for team north is 56.2%, worse than its target of 70.0%"
    assert finding.annotations["description"] == (
        "followup_7d for team north over the trailing 28 days: 9 of 16 = 56.2%; target at least 70.0%; "
        "minimum denominator 10."
    )
    assert "runbook_url" not in finding.annotations


# 12 baseline weeks alternating 8/10 and 6/10 (80%, 60%): mean 70%, mMR 20 points,
# limits 70 ± 53.2 -> 16.8% .. 123.2%; two-thirds lines 70 ± 35.47 -> 34.5% .. 105.5%.
BASELINE = [(8, 10), (6, 10)] * 6


def test_special_cause_names_the_rule_and_shows_values() -> None:
    points = weeks(BASELINE + [(1, 10)])  # 10% < 16.8%
    finding = special_cause_finding("north", "followup_7d", points, 12, None, "https://runbook")
    assert finding is not None
    assert finding.key == (SPECIAL_CAUSE, "north", "followup_7d")
    assert finding.annotations["rule"] == "beyond_limit"
    assert "a point beyond a process limit" in finding.annotations["summary"]
    description = finding.annotations["description"]
    assert "week starting 2025-03-31: 10.0% (1/10)" in description
    assert "mean 70.0%, process limits 16.8% to 123.2%" in description
    assert "lower limit 16.8%" in description


def test_special_cause_skips_empty_weeks_and_needs_a_baseline() -> None:
    # 11 usable weeks and one with no discharges: no baseline, no alert, whatever the values
    assert special_cause_finding("north", "followup_7d", weeks(BASELINE[:10] + [(0, 0), (0, 10)])) is None
    # an empty week inside the baseline is skipped: the mean stays 70%, not (840 / 13)%
    points = weeks(BASELINE[:6] + [(0, 0)] + BASELINE[6:] + [(1, 10)])
    finding = special_cause_finding("north", "followup_7d", points)
    assert finding is not None
    assert "mean 70.0%" in finding.annotations["description"]


@pytest.mark.parametrize(
    ("minimum", "fires"),
    [(0, True), (10, True), (11, False)],  # every week has exactly 10
)
def test_special_cause_needs_enough_cases_a_week(minimum: int, fires: bool) -> None:
    points = weeks(BASELINE + [(1, 10)])
    finding = special_cause_finding("north", "followup_7d", points, 12, None, "", minimum)
    assert (finding is not None) is fires


def test_special_cause_judges_only_weeks_with_enough_cases() -> None:
    # 0 of 3 is a rate of 0%, far below the lower limit, but three cases are not a week to judge
    assert special_cause_finding("north", "followup_7d", weeks(BASELINE + [(0, 3)]), 12, None, "", 10) is None
    assert special_cause_finding("north", "followup_7d", weeks(BASELINE + [(0, 3)]), 12, None, "", 3) is not None
    assert special_cause_finding("north", "followup_7d", weeks(BASELINE + [(9, 10), (0, 3)]), 12, None, "", 10) is None
    # small weeks inside the series are left out of the baseline: 11 judged weeks, no limits yet
    small_inside = weeks(BASELINE[:5] + [(0, 4)] + BASELINE[5:11] + [(1, 10)])
    assert special_cause_finding("north", "followup_7d", small_inside, 12, None, "", 10) is None
    # ... and of its mean: 70% over the 12 weeks of 10, not lowered by the week of 0 of 4
    finding = special_cause_finding(
        "north", "followup_7d", weeks(BASELINE[:6] + [(0, 4)] + BASELINE[6:] + [(1, 10)]), 12, None, "", 10
    )
    assert finding is not None
    assert "mean 70.0%" in finding.annotations["description"]
    # a small latest week neither raises nor resolves: the latest judged week decides
    signalling = weeks(BASELINE + [(1, 10), (2, 2)])
    assert special_cause_finding("north", "followup_7d", signalling, 12, None, "", 10) is not None
    assert special_cause_finding("north", "followup_7d", weeks(BASELINE + [(7, 10), (0, 2)]), 12, None, "", 10) is None


def test_special_cause_only_in_the_worse_direction() -> None:
    high = weeks(BASELINE + [(10, 10)] * 7)  # 7 weeks at 100%, above the mean
    assert special_cause_finding("north", "followup_7d", high) is None  # higher is better
    assert special_cause_finding("north", "first_contact_dna", high) is not None  # lower is better


def test_rebase_date_restarts_the_baseline() -> None:
    old = [(10, 10)] * 12
    points = weeks(old + BASELINE + [(7, 10)])
    assert special_cause_finding("north", "followup_7d", points) is not None  # judged by the old process
    rebase = MONDAY + timedelta(weeks=12)
    assert special_cause_finding("north", "followup_7d", points, rebase=rebase) is None


def test_special_cause_is_info_and_names_the_variation_icon() -> None:
    finding = special_cause_finding("north", "followup_7d", weeks(BASELINE + [(1, 10)]))
    assert finding is not None
    assert finding.annotations["variation"] == "concern_low"
    assert "(variation concern_low)" in finding.annotations["summary"]
    _, out = transitions({}, {finding.key: finding}, T0)
    assert out[0].labels["severity"] == "info"
    lower = special_cause_finding("north", "readmission_30d", weeks(BASELINE + [(10, 10)] * 7))
    assert lower is not None
    assert lower.annotations["variation"] == "concern_high"


@pytest.mark.parametrize(
    ("tail", "rule"),
    [
        ([(3, 10), (3, 10)], "two_of_three"),
        # the third point on the other side of the mean: no 2 of 3 (NHSRplotthedots)
        ([(3, 10), (9, 10), (3, 10)], None),
        # the latest point back inside the two-thirds line is not part of the pattern
        ([(3, 10), (3, 10), (6, 10)], None),
        # a point beyond the limit does not count towards 2 of 3
        ([(3, 10), (1, 10)], "beyond_limit"),
    ],
)
def test_special_cause_two_of_three_as_making_data_count(tail: list[tuple[int, int]], rule: str | None) -> None:
    finding = special_cause_finding("north", "followup_7d", weeks(BASELINE + tail))
    assert (None if finding is None else finding.annotations["rule"]) == rule


def test_special_cause_screens_outlying_moving_ranges() -> None:
    # 70% and 75% of 20 a week with one week at 100%: its ranges (30 and 25 points) lift the
    # mean moving range from 7 to 9.1 points; 30 is at least 3.267 x 9.1 and is dropped.
    # Mean 74.6%; lower limit 56.0% screened, 50.4% not. 53% is beyond only the screened one.
    pcts = [70, 75, 70, 75, 70, 100, 75, 70, 75, 70, 75, 70]
    points = weeks([(p // 5, 20) for p in pcts] + [(53, 100)])
    finding = special_cause_finding("north", "followup_7d", points)
    assert finding is not None
    assert finding.annotations["rule"] == "beyond_limit"
    assert special_cause_finding("north", "followup_7d", points, screen_outliers=False) is None
    config = AlertRulesConfig(rate_targets={}, spc_screen_outliers=False)
    assert system_findings([], {("north", "followup_7d"): points}, config) == {}


def test_a_worsening_trend_still_on_the_better_side_is_not_special_cause() -> None:
    # NHSRplotthedots types a point by its side of the mean: a falling trend above the mean of
    # a higher-is-better measure is not a concern until it crosses the mean
    falling = [(100, 100), (95, 100), (90, 100), (85, 100), (80, 100), (75, 100), (72, 100)]
    assert special_cause_finding("north", "followup_7d", weeks(BASELINE + falling)) is None
    crossed = special_cause_finding("north", "followup_7d", weeks(BASELINE + falling + [(69, 100)]))
    assert crossed is not None
    assert crossed.annotations["rule"] == "trend"


def test_system_findings_combine_both_rules() -> None:
    config = AlertRulesConfig(rate_targets={"followup_7d": 0.7})
    rows = [Row("north", "followup_7d", 5, 10), Row("south", "followup_7d", 9, 10), Row("north", "referral_wait_days", 1, 1)]
    series = {("south", "followup_7d"): weeks(BASELINE + [(0, 10)]), ("north", "followup_7d"): weeks(BASELINE)}
    found = system_findings(rows, series, config)
    assert sorted(found) == [(RATE_OFF_TARGET, "north", "followup_7d"), (SPECIAL_CAUSE, "south", "followup_7d")]


@pytest.mark.parametrize(
    ("tail", "confirm", "fires"),
    [
        ([(1, 10)], 1, True),  # the rules as written: one point beyond the limit
        ([(1, 10)], 2, False),  # not yet sustained
        ([(1, 10), (1, 10)], 2, True),
        ([(1, 10), (0, 3), (1, 10)], 2, True),  # the week of 3 is not judged: the one before counts
        ([(1, 10), (7, 10), (1, 10)], 2, False),
        ([(1, 10), (1, 10)], 3, False),
        ([(1, 10), (1, 10), (1, 10)], 3, True),
    ],
)
def test_special_cause_can_ask_for_a_sustained_signal(tail: list[tuple[int, int]], confirm: int, fires: bool) -> None:
    config = AlertRulesConfig(rate_targets={}, spc_min_weekly_denominator=10, spc_confirm_weeks=confirm)
    found = system_findings([], {("north", "followup_7d"): weeks(BASELINE + tail)}, config)
    assert ((SPECIAL_CAUSE, "north", "followup_7d") in found) is fires


def _finding(alertname: str, team: str = "north") -> Finding:
    return Finding(alertname, team, "followup_7d", {"summary": alertname})


def test_transitions_fire_once_and_resolve_with_the_original_start() -> None:
    found = {f.key: f for f in [_finding(RATE_OFF_TARGET)]}
    state, out = transitions({}, found, T0)
    assert [(a.name, a.status, a.starts_at) for a in out] == [(RATE_OFF_TARGET, Status.FIRING, T0)]
    assert out[0].labels == {"alertname": RATE_OFF_TARGET, "team": "north", "measure": "followup_7d", "severity": "warning"}
    state, out = transitions(state, found, T0 + timedelta(days=1))
    assert out == []
    state, out = transitions(state, {}, T0 + timedelta(days=2))
    assert [(a.status, a.starts_at, a.ends_at) for a in out] == [(Status.RESOLVED, T0, T0 + timedelta(days=2))]
    assert state == {}


def test_transitions_leave_unevaluated_teams_alone() -> None:
    state, _ = transitions({}, {f.key: f for f in [_finding(SPECIAL_CAUSE, "south")]}, T0)
    state, out = transitions(state, {}, T0 + timedelta(days=1), teams=["north"])
    assert out == []
    assert list(state) == [(SPECIAL_CAUSE, "south", "followup_7d")]


def test_transitions_need_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        transitions({}, {}, datetime(2025, 1, 1))  # noqa: DTZ001


class Windows:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.series: dict[tuple[str, str], list[Point]] = {}

    def rates(self, now: datetime, trailing_days: int, /) -> list[Row]:
        assert trailing_days == 28
        return self.rows

    def weekly_series(self, team: str, measure: str, watermark: datetime, /) -> list[Point]:
        return self.series.get((team, measure), [])


def test_system_alert_rules_lifecycle_and_state_round_trip() -> None:
    rules = SystemAlertRules(AlertRulesConfig(rate_targets={"followup_7d": 0.7}, runbook_url="https://rb"))
    windows = Windows()
    windows.rows = [Row("north", "followup_7d", 5, 10), Row("south", "followup_7d", 9, 10)]
    out = rules.evaluate(windows, T0)
    assert [(a.name, a.labels["team"], a.status) for a in out] == [(RATE_OFF_TARGET, "north", Status.FIRING)]
    assert rules.evaluate(windows, T0 + timedelta(hours=1)) == []

    restarted = SystemAlertRules(rules.config)
    restarted.load(rules.dump("north"), team="north")
    assert [a.fingerprint for a in restarted.firing()] == [out[0].fingerprint]
    assert rules.dump("south") == b'{"firing": [], "v": 1}'

    windows.rows = [Row("north", "followup_7d", 8, 10)]
    out = restarted.evaluate(windows, T0 + timedelta(days=1))
    assert [(a.status, a.starts_at, a.ends_at) for a in out] == [(Status.RESOLVED, T0, T0 + timedelta(days=1))]
    assert out[0].annotations["runbook_url"] == "https://rb"


def test_special_cause_judges_weeks_as_they_stood_when_first_judged() -> None:
    # lost_before_contact (lower is better): every week is judged at 30% (3 of 10, referrals
    # still open past the limit count as lost), and later revised to 10% (1 of 10) when the
    # late first contacts come. Judged on revised weeks, each new week would look worse.
    rules = SystemAlertRules(AlertRulesConfig(rate_targets={}))
    windows = Windows()
    windows.rows = [Row("north", "lost_before_contact", 3, 10)]
    fired = []
    for week in range(20):
        windows.series[("north", "lost_before_contact")] = weeks([(1, 10)] * week + [(3, 10)])
        fired += [a for a in rules.evaluate(windows, T0 + timedelta(weeks=week)) if a.name == SPECIAL_CAUSE]
    assert fired == []
    # the same series as revised raises it (what the rules saw before judging weeks as first judged)
    assert special_cause_finding("north", "lost_before_contact", weeks([(1, 10)] * 19 + [(3, 10)])) is not None


def test_a_look_back_measure_is_judged_once_its_look_back_is_covered() -> None:
    # repeat_crisis_30d: the first weeks of data have no earlier crises to repeat (5%), then
    # the steady rate alternates 20% / 30%. A baseline with the warm-up weeks in it would put
    # the mean near 20% and see the steady weeks as a shift; judged from day 30 on, none.
    warm_up = [(1, 20)] * 5
    steady = [(4, 20), (6, 20)] * 10
    rules = SystemAlertRules(AlertRulesConfig(rate_targets={}))
    windows = Windows()
    windows.rows = [Row("*", "repeat_crisis_30d", 5, 20)]
    fired = []
    for week in range(1, len(warm_up + steady) + 1):
        windows.series[("*", "repeat_crisis_30d")] = weeks((warm_up + steady)[:week])
        fired += [a for a in rules.evaluate(windows, T0 + timedelta(weeks=week)) if a.name == SPECIAL_CAUSE]
    assert fired == []
    assert special_cause_finding("*", "repeat_crisis_30d", weeks(warm_up + steady)) is not None


def test_load_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="state dump"):
        SystemAlertRules(AlertRulesConfig(rate_targets={})).load(b"{}")


def test_config_from_settings_and_rebase() -> None:
    settings = Settings()
    config = parts.rules_config(settings, {"north/followup_7d": "2025-04-07"})
    assert config.rate_targets == {"followup_72h": 0.80, "followup_7d": 0.70, "seen_within_target": 0.80}
    assert config.min_denominator == 10
    assert config.baseline_points == 12
    assert config.rebase == {("north", "followup_7d"): date(2025, 4, 7)}
    assert parse_rebase({"team/with/slash/followup_7d": date(2025, 1, 6)}) == {("team/with/slash", "followup_7d"): date(2025, 1, 6)}
    for bad in ({"followup_7d": "2025-01-01"}, {"north/nope": "2025-01-01"}, {"north/followup_7d": "soon"}):
        with pytest.raises(ValueError):  # noqa: PT011
            parse_rebase(bad)
