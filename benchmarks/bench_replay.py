"""Replay throughput against a bare ``json.loads`` loop over the same file (not a test).

    .venv/bin/python benchmarks/bench_replay.py --clients 20000 --days 180

Generates a synthetic CloudEvents JSON-lines file (referrals, contacts, crises, admissions,
discharges, closures, a few cancels and duplicates; arrival order shuffled within 24 hours),
then reports events per second for: a bare ``json.loads`` loop; decode only
(``schemas.decode.Decoder``); the full replay (decode + engine + finish); and the engine on
pre-decoded events. Target: replay >= 0.3 x the bare loop (aim 0.5) and >= 100,000 events/s.
It also reports peak traced memory per 100,000 clients with open state, the memory held per
100,000 clients with no open state (pruned to their last team assignment), and a floor: each
client's history kept sorted with no rule evaluated (the core's own record and insert, on
pre-decoded events), a part of the per-event budget no evaluation scheme can avoid.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import gc
import json
import pstats
import random
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.deadletter import DeadLetter, Origin
from schemas.decode import Decoder
from schemas.model import Event
from streams.core import CoreConfig, _record, _sort_key, idle
from streams.engine import Engine, replay_gc
from streams.replay import replay_stream

TEAMS = ["north", "south", "east", "west", "crisis-team"]
START = datetime(2025, 1, 1, tzinfo=UTC)


def _ce(rng: random.Random, n: int, type_: str, t: datetime, subject: str, data: dict) -> tuple[datetime, str]:
    return t, json.dumps(
        {"specversion": "1.0", "id": f"ev-{n}", "source": "ehr/community", "type": type_,
         "time": t.isoformat(), "subject": subject, "data": data},
        separators=(",", ":"),
    )


def generate(path: Path, clients: int, days: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    rows: list[tuple[datetime, str]] = []
    n = 0
    for c in range(clients):
        subject = f"MRN{c:08d}"
        team = rng.choice(TEAMS)
        t = START + timedelta(minutes=rng.randrange(days * 1440))
        ref = f"R{c}"
        n += 1
        rows.append(_ce(rng, n, "referral.received", t, subject,
                        {"referral_id": ref, "team": team, "urgency": rng.choice(["emergency", "urgent", "routine", "routine"])}))
        for _ in range(rng.randrange(1, 6)):
            t += timedelta(hours=rng.randrange(4, 24 * 20))
            n += 1
            rows.append(_ce(rng, n, "contact", t, subject,
                            {"contact_id": f"K{n}", "team": team,
                             "status": rng.choice(["attended", "attended", "attended", "did_not_attend"]),
                             "mode": rng.choice(["face_to_face", "telephone", "video", "text"])}))
        if rng.random() < 0.3:
            for _ in range(rng.randrange(1, 4)):
                n += 1
                rows.append(_ce(rng, n, "crisis", t + timedelta(days=rng.randrange(0, 40)), subject,
                                {"crisis_id": f"X{n}", "setting": "crisis_line"}))
        if rng.random() < 0.25:
            adm = t + timedelta(days=rng.randrange(0, 30))
            dis = adm + timedelta(days=rng.randrange(1, 20))
            n += 1
            rows.append(_ce(rng, n, "admission", adm, subject,
                            {"encounter_id": f"E{c}", "facility": "st-marys", "setting": "inpatient", "psychiatric": True}))
            n += 1
            rows.append(_ce(rng, n, "discharge", dis, subject,
                            {"encounter_id": f"E{c}", "facility": "st-marys", "setting": "inpatient",
                             "psychiatric": True, "disposition": "home"}))
            n += 1
            rows.append(_ce(rng, n, "contact", dis + timedelta(hours=rng.randrange(12, 24 * 12)), subject,
                            {"contact_id": f"K{n}", "team": team, "status": "attended", "mode": "telephone"}))
        if rng.random() < 0.5:
            n += 1
            rows.append(_ce(rng, n, "referral.closed", t + timedelta(days=rng.randrange(1, 60)), subject,
                            {"referral_id": ref, "reason": rng.choice(["seen", "declined", "no_contact"])}))
        if rng.random() < 0.02:
            n += 1
            rows.append(_ce(rng, n, "cancel", t + timedelta(hours=1), subject, {"cancels": f"ev-{n - 2}"}))
        if rng.random() < 0.02:
            rows.append(rows[-1])
    # arrival order: event time plus a delay of up to 24 hours (well within the lateness)
    rows.sort(key=lambda r: r[0] + timedelta(minutes=rng.randrange(24 * 60)))
    with path.open("w") as f:
        for _, line in rows:
            f.write(line + "\n")
    return len(rows)


def bare(path: Path) -> float:
    loads = json.loads
    t0 = time.perf_counter()
    with path.open("rb") as f:
        for line in f:
            loads(line)
    return time.perf_counter() - t0


def decode_only(path: Path, decoder: Decoder) -> tuple[float, list[Event]]:
    events: list[Event] = []
    decode = decoder.decode_line
    name = path.name
    t0 = time.perf_counter()
    with path.open("rb") as f:
        for i, line in enumerate(f, 1):
            r = decode(line.rstrip(b"\n"), name, i)
            if not isinstance(r, DeadLetter):
                events.append(r)
    return time.perf_counter() - t0, events


def replay(path: Path, decoder: Decoder, config: CoreConfig) -> float:
    """The replay's own loop (``streams.replay.replay_stream``), then finish and the report."""
    engine = Engine(config)
    t0 = time.perf_counter()
    with path.open("rb") as f:
        replay_stream(f, engine, decoder, path.name)
    engine.finish()
    engine.report()
    return time.perf_counter() - t0


def engine_only(events: list[Event], config: CoreConfig) -> float:
    """The engine on pre-decoded events, with the garbage collector tuned as a replay tunes
    it (``streams.engine.replay_gc``)."""
    engine = Engine(config)
    t0 = time.perf_counter()
    with replay_gc():
        for e in events:
            engine.feed(e)
        engine.finish()
    return time.perf_counter() - t0


def floor(events: list[Event], config: CoreConfig) -> float:
    """Each client's records kept sorted as ``streams.core.step`` keeps them (its private
    ``_record`` and ``_sort_key``), nothing derived: the floor of any evaluation scheme."""
    cal = config.calendar
    history: dict[str, list[Any]] = {}
    t0 = time.perf_counter()
    for e in events:
        bisect.insort(history.setdefault(e.client, []), _record(e, cal), key=_sort_key)
    return time.perf_counter() - t0


def memory_per_100k(config: CoreConfig, decoder: Decoder, clients: int) -> tuple[float, int]:
    """Peak traced MiB per 100,000 clients, each with an open referral and a fresh discharge."""
    rng = random.Random(3)
    events: list[Event] = []
    for c in range(clients):
        t = START + timedelta(minutes=rng.randrange(2 * 1440))
        for n, (type_, data) in enumerate([
            ("referral.received", {"referral_id": "R", "team": rng.choice(TEAMS), "urgency": "routine"}),
            ("discharge", {"encounter_id": "E", "facility": "f", "setting": "inpatient", "psychiatric": True,
                           "disposition": "home"}),
        ]):
            raw = json.dumps({"specversion": "1.0", "id": f"{c}-{n}", "source": "s", "type": type_,
                              "time": (t + timedelta(hours=n)).isoformat(), "subject": f"S{c}", "data": data}).encode()
            r = decoder.decode(raw, Origin())
            assert isinstance(r, Event)
            events.append(r)
    events.sort(key=lambda e: e.time)
    gc.collect()
    tracemalloc.start()
    engine = Engine(config)
    for e in events:
        engine.feed(e)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    open_clients = len(engine.clients)
    return peak / 2**20 * 100_000 / max(open_clients, 1), open_clients


def memory_idle_per_100k(config: CoreConfig, decoder: Decoder, clients: int) -> tuple[float, float, int]:
    """Stage 1's client states of clients with no open state: each was referred and seen (an
    attended contact) long before the watermark, so its history was pruned and only its last
    (time, team) assignment is kept for the responsible-team look-up; the engine holds such a
    state serialised. Returns the traced MiB per 100,000 such clients of a dict of them as the
    engine holds them (keys included; stage 2's windows are not counted), their mean
    serialised size in bytes (also a live changelog record's value), and how many."""
    rng = random.Random(4)
    events: list[Event] = []
    last = START
    for c in range(clients):
        t = START + timedelta(minutes=rng.randrange(2 * 1440))
        team = rng.choice(TEAMS)
        for n, (type_, data) in enumerate([
            ("referral.received", {"referral_id": "R", "team": team, "urgency": "routine"}),
            ("contact", {"contact_id": "K", "team": team, "status": "attended", "mode": "telephone"}),
        ]):
            raw = json.dumps({"specversion": "1.0", "id": f"{c}-{n}", "source": "s", "type": type_,
                              "time": (t + timedelta(hours=n)).isoformat(), "subject": f"S{c}", "data": data}).encode()
            r = decoder.decode(raw, Origin())
            assert isinstance(r, Event)
            events.append(r)
            last = max(last, r.time)
    events.sort(key=lambda e: e.time)
    tick = json.dumps({"specversion": "1.0", "id": "tick", "source": "s", "type": "admission",
                       "time": (last + timedelta(days=400)).isoformat(), "subject": "tick",
                       "data": {"encounter_id": "E", "facility": "f", "setting": "observation",
                                "psychiatric": False}}).encode()
    late = decoder.decode(tick, Origin())
    assert isinstance(late, Event)
    engine = Engine(config)
    for e in events:
        engine.feed(e)
    engine.feed(late)  # every client is swept and pruned to its team pair
    stored = {k: v.to_bytes() for k, v in engine.clients.items() if idle(v)}
    stored.update(engine._idle)  # what the engine holds for them (serialised states)
    del engine, events
    gc.collect()
    tracemalloc.start()
    held = {k: bytes(bytearray(v)) for k, v in stored.items()}  # a copy, counted (keys existed before)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n = len(held)
    keys = sum(sys.getsizeof(k) for k in held)  # the pseudonyms (the table's keys)
    return (size + keys) / 2**20 * 100_000 / max(n, 1), sum(map(len, stored.values())) / max(n, 1), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--memory-clients", type=int, default=50_000)
    ap.add_argument("--file", type=Path, default=None, help="replay this JSON-lines file instead")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also run the engine under cProfile and print its N costliest functions (cumulative)")
    args = ap.parse_args()
    config = CoreConfig(timezone="America/New_York")
    decoder = Decoder(b"benchmark-key", 1 << 20)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or Path(tmp) / "events.jsonl"
        if args.file is None:
            count = generate(path, args.clients, args.days)
        else:
            count = sum(1 for _ in path.open("rb"))
        size = path.stat().st_size
        print(f"file: {count} events, {size / 2**20:.1f} MiB")
        t_bare = min(bare(path) for _ in range(3))
        t_dec, events = decode_only(path, Decoder(b"benchmark-key", 1 << 20))
        t_eng = engine_only(events, config)
        t_floor = min(floor(events, config) for _ in range(3))
        t_rep = replay(path, Decoder(b"benchmark-key", 1 << 20), config)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(engine_only, events, CoreConfig(timezone="America/New_York"))
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)
    rate = {name: count / t for name, t in
            [("json.loads loop", t_bare), ("decode only", t_dec), ("engine only", t_eng), ("replay", t_rep),
                             ("history only", t_floor)]}
    for name, r in rate.items():
        print(f"{name:>16}: {r:>12,.0f} events/s   {1e6 / r:7.1f} us/event")
    print(f"replay / bare json.loads: {rate['replay'] / rate['json.loads loop']:.2f} (target >= 0.3, aim 0.5)")
    mib, open_clients = memory_per_100k(config, decoder, args.memory_clients)
    print(f"peak traced memory: {mib:.0f} MiB per 100,000 clients with open state ({open_clients} measured)")
    mib, size, idle = memory_idle_per_100k(config, decoder, args.memory_clients)
    print(f"client states: {mib:.1f} MiB per 100,000 clients with no open state, {size:.0f} bytes serialised "
          f"each ({idle} measured)")


if __name__ == "__main__":
    main()
