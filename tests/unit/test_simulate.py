"""`pathwatch simulate`: shape, determinism, lateness, duplicates, cancels and injected churn.

The rate checks recompute measures from the generated lines with a small independent
reading of DOMAIN.md section 3 (weekday calendar, no holidays), not with the generator's
own code.
"""

from __future__ import annotations

import io
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import msgspec
import pytest

from pathwatch.simulate import Injection, SimulationOptions, generate, parse_injection, write
from schemas.model import DATA_TYPES

START = date(2025, 1, 6)
TEAMS = ("north", "south", "east", "west")

ENVELOPE = {"specversion", "id", "source", "type", "time", "subject", "data"}
DATA_FIELDS = {  # required, optional
    "referral.received": ({"referral_id", "team", "urgency"}, {"referral_source"}),
    "referral.closed": ({"referral_id", "reason"}, set()),
    "contact": ({"contact_id", "team", "status", "mode"}, {"referral_id"}),
    "crisis": ({"crisis_id", "setting"}, {"team"}),
    "admission": ({"encounter_id", "facility", "setting", "psychiatric"}, set()),
    "discharge": ({"encounter_id", "facility", "setting", "psychiatric", "disposition"}, {"team"}),
    "cancel": ({"cancels"}, {"reason"}),
}
ENUMS = {
    "urgency": {"emergency", "urgent", "routine"},
    "reason": {"seen", "declined", "no_contact", "transferred", "other"},
    "status": {"attended", "did_not_attend", "cancelled"},
    "mode": {"face_to_face", "telephone", "video", "text", "other"},
    "setting": {
        "crisis_line",
        "mobile_team",
        "crisis_center",
        "emergency_department",
        "inpatient",
        "observation",
    },
    "disposition": {
        "home",
        "community_residence",
        "acute_transfer",
        "nonacute_transfer",
        "against_medical_advice",
        "died",
        "prison_or_court",
        "other",
    },
}
HOSPITAL_SOURCES = {"hospital/st-marys", "hospital/riverside", "hospital/county-general"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")
INELIGIBLE = {"died", "acute_transfer", "nonacute_transfer", "prison_or_court"}
FOLLOW_UP_MODES = {"face_to_face", "telephone", "video"}


def small(**overrides: Any) -> SimulationOptions:
    base: dict[str, Any] = {
        "clients": 800,
        "teams": TEAMS,
        "start": START,
        "days": 120,
        "seed": 7,
        "tz": "America/New_York",
        "duplicate_fraction": 0.03,
        "cancel_fraction": 0.03,
    }
    return SimulationOptions(**{**base, **overrides})


def decode(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in lines]


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    return list(generate(small()))


@pytest.fixture(scope="module")
def events(stream: list[bytes]) -> list[dict[str, Any]]:
    return decode(stream)


# --- shape -------------------------------------------------------------------------------


def test_every_line_is_a_valid_cloudevent(events: list[dict[str, Any]]) -> None:
    assert len(events) > 5000
    for event in events:
        assert set(event) == ENVELOPE
        assert event["specversion"] == "1.0"
        assert RFC3339.match(event["time"]), event["time"]
        assert re.fullmatch(r"MRN-\d{6}", event["subject"])
        required, optional = DATA_FIELDS[event["type"]]
        data = event["data"]
        assert required <= set(data) <= required | optional, (event["type"], data)
        for name, allowed in ENUMS.items():
            if name in data and event["type"] != "cancel":
                assert data[name] in allowed, (name, data[name])
        if "team" in data:
            assert data["team"] in TEAMS
        msgspec.json.decode(msgspec.json.encode(data), type=DATA_TYPES[event["type"]])
        if event["type"] in ("admission", "discharge"):
            assert event["source"] in HOSPITAL_SOURCES
            assert event["source"] == f"hospital/{data['facility']}"
        elif event["type"] == "crisis":
            assert event["source"] == ("crisis/line" if data["setting"] == "crisis_line" else "ehr/community")
        elif event["type"] != "cancel":
            assert event["source"] == "ehr/community"


def test_all_types_and_teamless_crises_and_discharges_appear(events: list[dict[str, Any]]) -> None:
    types = Counter(e["type"] for e in events)
    assert set(types) == set(DATA_FIELDS)
    assert any(e["type"] == "crisis" and "team" not in e["data"] for e in events)
    assert any(e["type"] == "discharge" and "team" not in e["data"] for e in events)
    discharges = [e["data"] for e in events if e["type"] == "discharge"]
    assert {d["psychiatric"] for d in discharges} == {True, False}
    assert {d["setting"] for d in discharges} == {"inpatient", "observation"}
    assert len({e["source"] for e in events if e["type"] == "admission"}) == 3


def test_event_times_lie_in_the_period(events: list[dict[str, Any]]) -> None:
    days = {datetime.fromisoformat(e["time"]).date() for e in events}
    assert min(days) >= START
    assert max(days) < START + timedelta(days=120)


def test_offsets_follow_daylight_saving(events: list[dict[str, Any]]) -> None:
    offsets = {e["time"][-6:] for e in events}
    assert offsets == {"-05:00", "-04:00"}


# --- determinism -------------------------------------------------------------------------


def test_same_options_give_the_same_bytes(stream: list[bytes]) -> None:
    assert list(generate(small())) == stream


def test_a_different_seed_gives_a_different_stream(stream: list[bytes]) -> None:
    assert list(generate(small(seed=8))) != stream


def test_an_injection_changes_only_its_teams_clients(events: list[dict[str, Any]]) -> None:
    injected = decode(generate(small(injections=(parse_injection("north:followup_7d:0.2@3"),))))
    team_of = client_teams(events)

    def lines_of(stream: list[dict[str, Any]], team: str) -> list[dict[str, Any]]:
        return [e for e in stream if team_of.get(e["subject"]) == team]

    assert lines_of(injected, "south") == lines_of(events, "south")
    assert lines_of(injected, "north") != lines_of(events, "north")


# --- publication ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_delay", [timedelta(hours=72), timedelta(hours=2)])
def test_no_event_is_later_than_the_lateness_bound(max_delay: timedelta) -> None:
    events = decode(generate(small(clients=300, max_delay=max_delay)))
    latest = datetime.fromisoformat(events[0]["time"])
    out_of_order = 0
    for event in events:
        when = datetime.fromisoformat(event["time"])
        assert when >= latest - max_delay
        out_of_order += when < latest
        latest = max(latest, when)
    assert out_of_order > 50  # arrival order is not event-time order


def test_beyond_lateness_fraction_publishes_some_events_too_late() -> None:
    max_delay = timedelta(hours=72)
    events = decode(generate(small(clients=300, beyond_lateness_fraction=0.05)))
    latest = datetime.fromisoformat(events[0]["time"])
    too_late = 0
    for event in events:
        when = datetime.fromisoformat(event["time"])
        too_late += when < latest - max_delay
        latest = max(latest, when)
    assert too_late > 20


def test_duplicates_are_exact_resends(stream: list[bytes], events: list[dict[str, Any]]) -> None:
    by_key: dict[tuple[str, str], set[bytes]] = defaultdict(set)
    counts: Counter[tuple[str, str]] = Counter()
    for line, event in zip(stream, events, strict=True):
        key = (event["source"], event["id"])
        by_key[key].add(line)
        counts[key] += 1
    assert all(len(lines) == 1 for lines in by_key.values())
    resent = sum(1 for n in counts.values() if n > 1)
    assert 0.02 < resent / len(counts) < 0.04


def test_cancels_name_an_earlier_event_of_the_same_source_and_subject(events: list[dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    cancels = 0
    for event in events:
        if event["type"] == "cancel":
            target = seen.get((event["source"], event["data"]["cancels"]))
            assert target is not None, "cancel before its target"
            assert target["subject"] == event["subject"]
            assert target["type"] != "cancel"
            assert datetime.fromisoformat(event["time"]) > datetime.fromisoformat(target["time"])
            cancels += 1
        seen[(event["source"], event["id"])] = event
    originals = len({(e["source"], e["id"]) for e in events if e["type"] != "cancel"})
    assert 0.015 < cancels / originals < 0.04


def test_bad_fraction_adds_each_kind_of_bad_line() -> None:
    lines = list(generate(small(clients=300, bad_fraction=0.05)))
    kinds: Counter[str] = Counter()
    for line in lines:
        try:
            event = msgspec.json.decode(line)
        except msgspec.DecodeError:
            kinds["not_json"] += 1
            continue
        if "time" not in event:
            kinds["missing"] += 1
        elif event["type"] not in DATA_FIELDS:
            kinds["unknown_type"] += 1
        elif event["type"] == "referral.received" and event["data"]["urgency"] not in ENUMS["urgency"]:
            kinds["bad_urgency"] += 1
    assert set(kinds) == {"not_json", "missing", "unknown_type", "bad_urgency"}
    assert 0.03 < sum(kinds.values()) / len(lines) < 0.07


def test_write_counts_newline_terminated_lines(stream: list[bytes]) -> None:
    out = io.BytesIO()
    assert write(small(), out) == len(stream)
    assert out.getvalue() == b"".join(line + b"\n" for line in stream)


# --- realism -------------------------------------------------------------------------------


def test_dna_and_cancelled_contacts(events: list[dict[str, Any]]) -> None:
    statuses = Counter(e["data"]["status"] for e in events if e["type"] == "contact")
    assert statuses["did_not_attend"] / sum(statuses.values()) == pytest.approx(0.15, abs=0.04)
    assert statuses["cancelled"] > 0


def test_default_is_a_mid_sized_provider() -> None:
    options = SimulationOptions.mid_sized(seed=3)
    assert options.teams == ("north", "south", "east", "west", "central")
    assert options.clients == 6000
    assert options.days == 365
    assert options.seed == 3
    assert options.max_delay == timedelta(hours=72)
    assert options.bad_fraction == options.beyond_lateness_fraction == 0


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("north:followup_7d:0.45@20", Injection("north", "followup_7d", 0.45, 20)),
        ("central:seen_within_target:0.5@1", Injection("central", "seen_within_target", 0.5, 1)),
        ("east:repeat_crisis:0.8@10", Injection("east", "repeat_crisis_30d", 0.8, 10)),
        (" south:readmission_30d:1@52 ", Injection("south", "readmission_30d", 1.0, 52)),
    ],
)
def test_parse_injection(text: str, expected: Injection) -> None:
    assert parse_injection(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("north:followup_7d:0.45", "TEAM:MEASURE:RATE@WEEK"),
        ("north-followup_7d-0.45@20", "TEAM:MEASURE:RATE@WEEK"),
        ("north:followup_9d:0.45@20", "unknown measure 'followup_9d'"),
        ("north:followup_7d:high@20", "rate 'high' is not a number"),
        ("north:followup_7d:1.5@20", "not a probability"),
        ("north:followup_7d:nan@20", "not a number"),
        ("north:followup_7d:0.4@0", "week 0 is not 1 or later"),
        ("north:followup_7d:0.4@x", "week 'x' is not a whole number"),
    ],
)
def test_parse_injection_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_injection(text)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"clients": 0}, "clients must be at least 1"),
        ({"days": 0}, "days must be at least 1"),
        ({"teams": ()}, "at least one team"),
        ({"teams": ("north", "north")}, "team names repeat"),
        ({"tz": "Mars/Olympus"}, "not an IANA time zone"),
        ({"duplicate_fraction": 1.5}, "duplicate_fraction must be between 0 and 1"),
        ({"max_delay": timedelta(hours=-1)}, "max_delay must not be negative"),
        ({"injections": (Injection("central", "followup_7d", 0.4, 2),)}, "team 'central' is not one of"),
        ({"injections": (Injection("north", "followup_7d", 0.4, 30),)}, "starts after the last day"),
    ],
)
def test_options_reject_out_of_range_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        small(**overrides)


# --- injected churn: recompute the measures from the lines -----------------------------------

INJECT_WEEK = 20
INJECTIONS = (
    "north:followup_7d:0.45@20",
    "south:readmission_30d:0.45@20",
    "east:repeat_crisis:0.8@20",
    "west:seen_within_target:0.3@20",
)
CHURN_DAYS = 280


@dataclass
class Rate:
    numerator: int = 0
    denominator: int = 0

    def add(self, hit: bool) -> None:
        self.numerator += hit
        self.denominator += 1

    @property
    def value(self) -> float:
        return self.numerator / self.denominator

    def near(self, expected: float, slack: float = 0.03) -> bool:
        """Within three binomial standard errors, plus ``slack`` for the measure's own bias."""
        error = (expected * (1 - expected) / self.denominator) ** 0.5
        return abs(self.value - expected) <= 3 * error + slack


def same(a: Rate, b: Rate) -> bool:
    """Two rates that differ by no more than three standard errors of their difference."""
    pooled = (a.numerator + b.numerator) / (a.denominator + b.denominator)
    error = (pooled * (1 - pooled) * (1 / a.denominator + 1 / b.denominator)) ** 0.5
    return abs(a.value - b.value) <= 3 * error + 0.03


def client_teams(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["subject"]: e["data"]["team"] for e in events if e["type"] in ("referral.received", "contact")}


def week_of(day: date) -> int:
    return (day - START).days // 7 + 1


def period(day: date) -> str:
    return "after" if week_of(day) >= INJECT_WEEK else "before"


def weekday_after(day: date, count: int) -> date:
    while count:
        day += timedelta(days=1)
        count -= day.weekday() < 5
    return day


@pytest.fixture(scope="module")
def churn() -> list[dict[str, Any]]:
    options = SimulationOptions(
        clients=8000,
        teams=TEAMS,
        start=START,
        days=CHURN_DAYS,
        seed=11,
        tz="Europe/London",
        injections=tuple(parse_injection(text) for text in INJECTIONS),
    )
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for event in decode(generate(options)):
        unique.setdefault((event["source"], event["id"]), event)
    cancelled = {(e["source"], e["data"]["cancels"]) for e in unique.values() if e["type"] == "cancel"}
    kept = [e for key, e in unique.items() if key not in cancelled and e["type"] != "cancel"]
    for event in kept:
        event["at"] = datetime.fromisoformat(event["time"])
        event["day"] = event["at"].date()
    return kept


def by_client(events: list[dict[str, Any]], kind: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e["at"]):
        if event["type"] == kind:
            out[event["subject"]].append(event)
    return out


def discharge_rates(
    churn: list[dict[str, Any]], window: int
) -> tuple[dict[tuple[str, str], Rate], dict[tuple[str, str], Rate]]:
    """followup within ``window`` days and readmission_30d per (team, before/after)."""
    teams = client_teams(churn)
    last_day = max(e["day"] for e in churn)
    admissions = by_client([e for e in churn if e["data"].get("setting") == "inpatient"], "admission")
    follow_ups = by_client(
        [
            e
            for e in churn
            if e["type"] == "contact"
            and e["data"]["status"] == "attended"
            and e["data"]["mode"] in FOLLOW_UP_MODES
        ],
        "contact",
    )
    followup: dict[tuple[str, str], Rate] = defaultdict(Rate)
    readmission: dict[tuple[str, str], Rate] = defaultdict(Rate)
    for discharge in churn:
        data = discharge["data"]
        if (
            discharge["type"] != "discharge"
            or data["setting"] != "inpatient"
            or not data["psychiatric"]
            or data["disposition"] in INELIGIBLE
        ):
            continue
        d, subject = discharge["day"], discharge["subject"]
        team = data.get("team") or teams.get(subject, "unassigned")
        key = (team, period(d))
        later = [a for a in admissions.get(subject, []) if a["at"] >= discharge["at"]]
        first_follow = next((c for c in follow_ups.get(subject, []) if c["day"] > d), None)
        if d + timedelta(days=window) < last_day:
            close = d + timedelta(days=window)
            blocking = [
                a
                for a in later
                if a["day"] <= close and (first_follow is None or a["at"] < first_follow["at"])
            ]
            if not blocking:
                followup[key].add(first_follow is not None and first_follow["day"] <= close)
        if d + timedelta(days=30) < last_day:
            readmission[key].add(any(d < a["day"] <= d + timedelta(days=30) for a in later))
    return followup, readmission


def test_urgency_mix(churn: list[dict[str, Any]]) -> None:
    urgencies = Counter(e["data"]["urgency"] for e in churn if e["type"] == "referral.received")
    total = sum(urgencies.values())
    assert total > 3000
    for urgency, expected in {"emergency": 0.05, "urgent": 0.25, "routine": 0.70}.items():
        assert urgencies[urgency] / total == pytest.approx(expected, abs=0.025)


def test_injected_followup_7d_falls_for_north_only(churn: list[dict[str, Any]]) -> None:
    followup, _ = discharge_rates(churn, 7)
    north_before, north_after = followup["north", "before"], followup["north", "after"]
    assert north_before.denominator >= 40
    assert north_after.denominator >= 40
    # a readmission before the follow-up takes the discharge out of the denominator, and those
    # are mostly discharges not followed up yet: the realised rate sits a few points above the
    # drawn one (about +0.05 at 0.45 over 30,000 clients)
    assert north_before.near(0.75, slack=0.06), north_before
    assert north_after.near(0.45, slack=0.06), north_after
    assert north_before.value - north_after.value > 0.15
    for team in ("south", "east", "west"):
        assert same(followup[team, "after"], followup[team, "before"]), team


def test_injected_followup_7d_moves_72h_and_30d_with_it(churn: list[dict[str, Any]]) -> None:
    within_3, _ = discharge_rates(churn, 3)
    within_30, _ = discharge_rates(churn, 30)
    # the shape of the waits is kept: 72h scales with 7d, 30d keeps the share followed up later
    assert within_3["north", "after"].near(0.45 * 0.55 / 0.75), within_3["north", "after"]
    assert within_30["north", "after"].near(0.45 + 0.55 * 0.13 / 0.25), within_30["north", "after"]
    assert within_30["north", "before"].near(0.88), within_30["north", "before"]


def test_injected_readmission_rises_for_south(churn: list[dict[str, Any]]) -> None:
    _, readmission = discharge_rates(churn, 7)
    assert readmission["south", "before"].near(0.12), readmission["south", "before"]
    assert readmission["south", "after"].near(0.45), readmission["south", "after"]
    assert readmission["north", "after"].value < 0.25


def test_injected_repeat_crisis_rises_for_east(churn: list[dict[str, Any]]) -> None:
    """The injected rate is the chance a crisis is followed by another within 30 days."""
    teams = client_teams(churn)
    last = max(e["at"] for e in churn)
    followed: dict[tuple[str, str], Rate] = defaultdict(Rate)
    repeat: dict[tuple[str, str], Rate] = defaultdict(Rate)
    for subject, crises in by_client(churn, "crisis").items():
        key_of = [(teams.get(subject, "unassigned"), period(c["day"])) for c in crises]
        for index, crisis in enumerate(crises):
            repeat[key_of[index]].add(
                any(
                    timedelta(0) < crisis["at"] - earlier["at"] <= timedelta(days=30)
                    for earlier in crises[:index]
                )
            )
            if crisis["at"] + timedelta(days=30) < last:
                followed[key_of[index]].add(
                    any(
                        timedelta(0) < later["at"] - crisis["at"] <= timedelta(days=30)
                        for later in crises[index + 1 :]
                    )
                )
    assert followed["east", "after"].near(0.8), followed["east", "after"]
    assert followed["east", "before"].value < 0.6
    assert repeat["east", "after"].value > repeat["east", "before"].value + 0.15
    assert same(repeat["west", "after"], repeat["west", "before"])


def test_injected_seen_within_target_falls_for_west(churn: list[dict[str, Any]]) -> None:
    attended = by_client(
        [e for e in churn if e["type"] == "contact" and e["data"]["status"] == "attended"], "contact"
    )
    last = max(e["at"] for e in churn)
    rates: dict[tuple[str, str], Rate] = defaultdict(Rate)
    for referral in churn:
        if referral["type"] != "referral.received":
            continue
        data, at, day = referral["data"], referral["at"], referral["day"]
        first = next(
            (
                c
                for c in attended.get(referral["subject"], [])
                if c["at"] >= at and c["data"]["team"] == data["team"]
            ),
            None,
        )
        if data["urgency"] == "emergency":
            within = first is not None and first["at"] <= at + timedelta(hours=4)
            passed = at + timedelta(hours=4) <= last
        else:
            target_day = weekday_after(day, 1 if data["urgency"] == "urgent" else 10)
            within = first is not None and first["day"] <= target_day
            passed = target_day < last.date()
        if first is not None or passed:
            rates[data["team"], period(day)].add(within)
    assert rates["west", "before"].value > 0.6
    # about 11% of referrals are declined or lost and never seen
    assert rates["west", "after"].near(0.3 * 0.89), rates["west", "after"]
    assert same(rates["north", "after"], rates["north", "before"])
