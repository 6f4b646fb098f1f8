"""Live pipeline throughput and event-to-alert latency on the local stack (not a test).

    scripts/stack up
    set -a; eval "$(scripts/stack env)"; set +a
    .venv/bin/python benchmarks/bench_live.py                 # 20k events, 30 s of latency
    .venv/bin/python benchmarks/bench_live.py --events 20000 --latency-seconds 10 --profile out/worker.prof

Throughput (issue 5): one simulated stream (``pathwatch.simulate``) is published once per
contender into its own topics (8 partitions, letters-only unique names: topic names are
metric labels and the label guard refuses digit runs), then each contender reads it alone:

1. a raw aiokafka consumer that json-decodes every value (in this process);
2. a bare faust agent that only deserialises (``benchmarks/bare_faust_agent.py``, a real
   worker subprocess; default per-event iteration);
3. one real ``pathwatch worker`` (``python -m pathwatch.cli worker``, ``alert_clock=event``
   as in the integration tests, no Alertmanager or webhook receivers);
4. with ``--stage1-alone``: a worker whose input was ingested beforehand (this process decodes
   the stream and publishes the internal events to ``clients``, keyed by pseudonym, as the
   ingestion agents do for HL7 and FHIR), timed through stage 1. (Before stage 1 read the
   events topic itself, this showed what dropping the ingestion hop would give.)

Each rate is events / (done - first message). The faust contenders are timed from outside
in the same way: *first message* is when the worker's first event shows (pathwatch:
``pathwatch_event_processing_latency_seconds_count`` or ``pathwatch_events_total`` on
/metrics, polled every 50 ms; bare agent: the time it writes on its first message), *done*
is when the consumer group has committed every offset of the topic the events were published
to (pathwatch: stage 1 reads the ``events`` topic itself; the offsets are read with an admin
client, which does not join the group). Both faust contenders commit every 0.5 s
(``--commit-interval``; faust's default 2.8 s made the figures jump by whole commit intervals
between runs), so both carry the same up-to-0.5 s commit delay; the bare agent's in-process
first-to-last-message rate is printed too. Target: pathwatch >= 1.0 x the bare agent. The
row "stage 1 and ticks" waits further for every ``clients`` message present once the events
are committed: in this run only ticks (a 1 s timer; none of the 20,000 events), so it adds up
to a commit interval that does not depend on the load (printed, with its ratio, not the
target's figure).

Latency: a fresh worker with ``PATHWATCH_ALERT_CLOCK=wall``; this process publishes, at a
steady rate (1,000 events/s) for a while (30 s), emergency ``referral.received`` events
dated one day ago, one new client each, so each fires ``ReferralWaiting`` as soon as stage 1
processes it. It times publish -> arrival of that client's alert on the ``alerts`` topic
(written by the delivery agent's Kafka receiver, through the Redis notification log) and on
the ``alert-transitions`` topic (stage 1's output, before delivery). Target: p99 < 1 s.
By default every event is such a probe (1,000 alerts a second, the worst case); with
``--probe-every N`` only every Nth is, and the others are attended contacts of other new
clients (each kept as history, no alert), so the load is 1,000 events/s of which 1,000/N fire.

Run time is about 2-4 minutes on 2 cores. Subprocesses are stopped (SIGINT, then SIGKILL)
and the benchmark's topics deleted at the end (``--keep-topics`` keeps them).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import shlex
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from pathwatch.simulate import SimulationOptions, write
from schemas.deadletter import Origin
from schemas.decode import Decoder
from schemas.model import Event, encode_event
from schemas.pseudonym import Pseudonymiser
from streams.publish import records, send_records

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-live-key"
PARTITIONS = 8
# both faust contenders commit this often (seconds; ``--commit-interval``): "done" is the first
# commit after the last message, so a longer interval only adds noise to both figures
COMMIT_INTERVAL = 0.5
Items = list[tuple[bytes | None, bytes]]


# -- environment and helpers ----------------------------------------------------------------


def require_stack() -> tuple[str, str]:
    """(Kafka bootstrap, Redis URL) from the environment; exit with a clear message otherwise."""
    bootstrap = os.environ.get("PATHWATCH_KAFKA_BOOTSTRAP", "")
    redis_url = os.environ.get("PATHWATCH_REDIS_URL", "")
    if not bootstrap or not redis_url:
        sys.exit(
            "PATHWATCH_KAFKA_BOOTSTRAP and PATHWATCH_REDIS_URL must be set: run `scripts/stack up`, then\n"
            '  set -a; eval "$(scripts/stack env)"; set +a'
        )
    for name, address in (("Kafka", bootstrap), ("Redis", redis_url.split("//", 1)[-1].split("/", 1)[0])):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except (OSError, ValueError) as exc:
            sys.exit(f"{name} at {address} is not reachable ({exc}): is the stack up (`scripts/stack status`)?")
    return bootstrap, redis_url


def letters(n: int) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=n))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class Child:
    """A subprocess with its output in a log file; stopped with SIGINT, then SIGKILL."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log = cwd / f"{name}.log"
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self, timeout: float = 30) -> None:
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Offsets:
    """End offsets of topics and committed offsets of groups, read without joining a group."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-live")
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    def ends(self, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
        tps = [KTopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: off for tp, off in self.consumer.end_offsets(tps).items()}

    def committed(self, group: str, topic: str) -> dict[int, int]:
        try:
            offsets = self.admin.list_group_offsets({group: None}).get(group, {})
        except Exception:  # noqa: BLE001 - a group that has not committed yet
            return {}
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}

    def caught_up(self, group: str, topic: str, ends: dict[int, int]) -> bool:
        done = self.committed(group, topic)
        return all(done.get(p, 0) >= end for p, end in ends.items())

    def create(self, names: list[str], partitions: int = PARTITIONS) -> None:
        self.admin.create_topics([NewTopic(name, partitions, 1) for name in names])
        # wait for leaders, so the first publish does not start with retries
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if all(len(self.ends(name, partitions)) == partitions for name in names):
                    return
            except Exception:  # noqa: BLE001 - not ready yet
                pass
            time.sleep(0.2)

    def delete_matching(self, marker: str) -> int:
        names = [t for t in self.admin.list_topics() if marker in t]
        if names:
            self.admin.delete_topics(names)
        return len(names)

    def close(self) -> None:
        self.consumer.close(autocommit=False)
        self.admin.close()


def wait_until(what: str, condition: Callable[[], bool], timeout: float, interval: float = 0.1,
               child: Child | None = None) -> float:
    """Poll ``condition`` until true; return the time.time() it was first seen true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None:
            child.check()
        if condition():
            return time.time()
        time.sleep(interval)
    tail = f"\n{child.name} log:\n{child.tail()}" if child is not None else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


def http_get(port: int, path: str) -> bytes | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:  # noqa: S310 - loopback
            return bytes(response.read())
    except OSError:
        return None


# -- input ----------------------------------------------------------------------------------


def simulated_items(events: int, seed: int, tmp: Path) -> Items:
    """``events`` keyed records of a simulated stream, keyed like ``pathwatch publish``."""
    clients = max(50, events // 18)
    while True:
        out = io.BytesIO()
        write(SimulationOptions(clients=clients, days=365, seed=seed), out)
        lines = out.getvalue().splitlines(keepends=True)
        if len(lines) >= events:
            break
        clients = int(clients * 1.3 * events / len(lines)) + 1
    path = tmp / "events.jsonl"
    path.write_bytes(b"".join(lines[:events]))
    _, items = records(path, "events", Pseudonymiser(KEY.encode()))
    return items


async def produce(bootstrap: str, topic: str, items: Items) -> float:
    """Publish like ``streams.publish.publish`` (idempotent, acks=all, linger 5 ms); returns seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    start = time.perf_counter()
    try:
        await send_records(producer, topic, list(items))
    finally:
        await producer.stop()
    return time.perf_counter() - start


# -- contenders -----------------------------------------------------------------------------


@dataclass
class Rate:
    name: str
    events: int
    seconds: float
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


async def raw_consumer(bootstrap: str, topic: str, expected: int) -> Rate:
    """aiokafka, all partitions assigned, json.loads per value, first record to last."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count = 0
        first = 0.0
        loads = json.loads
        async with asyncio.timeout(120):
            while count < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    if not first and messages:
                        first = time.perf_counter()
                    for m in messages:
                        loads(m.value)
                    count += len(messages)
        return Rate("raw aiokafka consumer (json.loads)", count, time.perf_counter() - first)
    finally:
        await consumer.stop()


def bare_faust(bootstrap: str, topic: str, group: str, expected: int, offsets: Offsets, tmp: Path,
               children: list[Child], take: int) -> tuple[Rate, Rate]:
    """The bare agent timed from outside (first message -> group committed all) and inside."""
    out = tmp / f"{group}.json"
    env = dict(
        os.environ, BARE_BOOTSTRAP=bootstrap, BARE_TOPIC=topic, BARE_APP_ID=group,
        BARE_PARTITIONS=str(PARTITIONS), BARE_OUT=str(out), BARE_EXPECT=str(expected), BARE_TAKE=str(take),
        BARE_COMMIT_INTERVAL=str(COMMIT_INTERVAL),
    )
    child = Child(group, [sys.executable, str(ROOT / "benchmarks" / "bare_faust_agent.py"), "worker", "-l", "warn"],
                  env, tmp)
    children.append(child)
    ends = offsets.ends(topic)
    wait_until("the bare agent's first message", out.exists, 90, 0.02, child)
    first = json.loads(out.read_text())["first"]
    done = wait_until("the bare agent's group to commit everything",
                      lambda: offsets.caught_up(group, topic, ends), 180, 0.1, child)
    inside = json.loads(out.read_text())
    child.stop()
    label = "bare faust agent" + (f" (take {take})" if take else "")
    return (
        Rate(label, expected, done - first, "first message -> group committed all"),
        Rate(label + ", in-process", inside["count"], inside["last"] - inside["first"], "first -> last message"),
    )


def worker_env(bootstrap: str, redis_url: str, unique: str, alert_clock: str) -> tuple[dict[str, str], dict[str, str]]:
    """(process environment, topic names) of an isolated pathwatch deployment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PATHWATCH_ALERTMANAGER_URL", "PATHWATCH_WEBHOOK_URL")}
    topics = {
        name: f"{name.replace('_', '')}-{unique}"
        for name in ("events", "hl7", "fhir", "clients", "observations", "alerts", "transitions", "dead_letters")
    }
    env.update(
        PATHWATCH_KAFKA_BOOTSTRAP=bootstrap,
        PATHWATCH_REDIS_URL=redis_url,
        PATHWATCH_PSEUDONYM_KEY=KEY,
        PATHWATCH_ALERT_CLOCK=alert_clock,
        PATHWATCH_APP_ID=f"pwbench-{unique}",
        PATHWATCH_PARTITIONS=str(PARTITIONS),
        PATHWATCH_WEB_PORT=str(free_port()),
        PATHWATCH_BROKER_SESSION_TIMEOUT="10",
        PATHWATCH_BROKER_HEARTBEAT_INTERVAL="1",
        PATHWATCH_BROKER_REBALANCE_TIMEOUT="20",
        PATHWATCH_COMMIT_INTERVAL=f"{COMMIT_INTERVAL}s",
    )
    for name, topic in topics.items():
        env[f"PATHWATCH_TOPICS__{name.upper()}"] = topic
    return env, topics


def start_worker(name: str, env: dict[str, str], tmp: Path, children: list[Child], profile: Path | None,
                 command: str = "worker") -> Child:
    prefix = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    child = Child(name, [*prefix, "-m", "pathwatch.cli", command], env, tmp)
    children.append(child)
    return child


def wait_ready(child: Child, port: int, timeout: float = 120) -> None:
    def ready() -> bool:
        body = http_get(port, "/ready")
        return body is not None and bool(json.loads(body).get("ready"))

    wait_until(f"{child.name} /ready", ready, timeout, 0.2, child)


# the processing latency is observed per decoded event (stage 1 also counts events_total)
_EVENTS_TOTAL = re.compile(
    rb"^pathwatch_(?:event_processing_latency_seconds_count|events_total)\{[^}]*\} ([0-9.e+]+)$", re.M
)


def wait_first_event(child: Child, port: int) -> float:
    """When the worker's first event shows on its /metrics (polled every 50 ms)."""

    def first_event() -> bool:
        body = http_get(port, "/metrics")
        return body is not None and sum(float(v) for v in _EVENTS_TOTAL.findall(body)) > 0

    return wait_until("the worker's first event", first_event, 120, 0.05, child)


class MetricsProbe:
    """Times a GET of /metrics every 0.25 s in a thread: how long the worker's event loop
    keeps others waiting (an 8.6 s answer was seen during a backfill before stage 1 ran its
    batches in slices)."""

    def __init__(self, port: int) -> None:
        import threading

        self.port = port
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=60) as r:  # noqa: S310
                    r.read()
            except OSError:
                continue
            self.times.append(time.perf_counter() - start)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        v = sorted(self.times)
        return f"/metrics answered {len(v)} times: p50 {percentile(v, 50) * 1000:.0f} ms, " \
               f"p99 {percentile(v, 99) * 1000:.0f} ms, max {v[-1] * 1000 if v else float('nan'):.0f} ms; " \
               f"{self.loop_lag()}"

    def loop_lag(self) -> str:
        """The worker's own event-loop lag histogram so far: probes run 100 ms late or more."""
        text = (http_get(self.port, "/metrics") or b"").decode()
        buckets = dict(re.findall(r'pathwatch_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text))
        if "+Inf" not in buckets:
            return "no loop-lag histogram"
        total, under = float(buckets["+Inf"]), float(buckets.get("0.1", "nan"))
        return f"loop-lag probes 100 ms late or more: {total - under:.0f} of {total:.0f}"


def pathwatch_worker(bootstrap: str, redis_url: str, items: Items, offsets: Offsets, tmp: Path,
                     children: list[Child], profile: Path | None, alert_clock: str = "event",
                     idle_seconds: float = 0.0) -> tuple[list[Rate], str, list[str]]:
    """Pre-publish, start one worker, time first event -> the events topic committed (stage 1),
    then every ``clients`` message present by then (ticks), then stage 2's input. With
    ``alert_clock="wall"`` (the default settings) on the simulated history, this is the
    backfill case; ``idle_seconds``: then count the client-state changelog records written
    while idle. Returns the rates, the worker's name and notes (the /metrics probe, idle
    writes)."""
    unique = letters(10)
    env, topics = worker_env(bootstrap, redis_url, unique, alert_clock)
    group = env["PATHWATCH_APP_ID"]
    offsets.create([topics[k] for k in ("events", "hl7", "fhir")])
    asyncio.run(produce(bootstrap, topics["events"], items))
    events_end = offsets.ends(topics["events"])
    port = int(env["PATHWATCH_WEB_PORT"])
    child = start_worker(f"pathwatch-{unique}", env, tmp, children, profile)
    first = wait_first_event(child, port)
    probe = MetricsProbe(port)
    ingested = wait_until("the events topic to be committed",
                          lambda: offsets.caught_up(group, topics["events"], events_end), 1800, 0.1, child)
    clients_end = offsets.ends(topics["clients"])
    stage1 = wait_until("stage 1 to commit everything",
                        lambda: offsets.caught_up(group, topics["clients"], clients_end), 600, 0.1, child)
    obs_end = offsets.ends(topics["observations"])
    stage2 = wait_until("stage 2 to commit everything",
                        lambda: offsets.caught_up(group, topics["observations"], obs_end), 600, 0.1, child)
    notes = [f"{alert_clock} clock, during the drain: {probe.stop()}"]
    if idle_seconds:
        changelog = f"{group}-client-state-changelog"
        time.sleep(10)  # the last batches' ticks and sweeps
        before = offsets.ends(changelog)
        time.sleep(idle_seconds)
        after = offsets.ends(changelog)
        states, metadata = idle_records(bootstrap, changelog, before, after)
        notes.append(f"{alert_clock} clock, idle after the drain, {idle_seconds:.0f} s: {states} client-state records "
                     f"({states * 60 / idle_seconds:.1f} per minute) and {metadata} partition-metadata records "
                     f"({metadata * 60 / idle_seconds:.1f} per minute) in the client-state changelog")
    child.stop()
    n = len(items)
    note = f"{sum(clients_end.values())} clients msgs, {sum(obs_end.values())} observation msgs"
    label = "pathwatch worker" if alert_clock == "event" else f"pathwatch worker, {alert_clock} clock (backfill)"
    return [
        Rate(f"{label}: through stage 1", n, ingested - first, "first event -> events committed"),
        Rate(f"{label}: stage 1 and ticks", n, stage1 - first, "first event -> clients committed"),
        Rate(f"{label}: through stage 2", n, stage2 - first, note),
    ], child.name, notes


def idle_records(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int]) -> tuple[int, int]:
    """(client-state records, partition-metadata records: keys starting with a NUL byte) of
    ``topic`` between the offsets ``start`` and ``end``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [KTopicPartition(topic, p) for p in start if end[p] > start[p]]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        states = metadata = 0
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp.partition] for tp in tps) and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=1000).items():
                for m in batch:
                    if m.offset >= end[tp.partition]:
                        continue
                    if (m.key or b"").startswith(b"\x00"):
                        metadata += 1
                    else:
                        states += 1
        return states, metadata
    finally:
        consumer.close()


def sigkill_recovery(bootstrap: str, redis_url: str, items: Items, offsets: Offsets, tmp: Path,
                     children: list[Child], static: bool, after: float) -> list[str]:
    """A worker killed with SIGKILL ``after`` seconds into draining ``items``, and a new one
    started at once with the same settings (``static``: both with one
    ``PATHWATCH_GROUP_INSTANCE_ID``): seconds from the restart to the events topic committed
    (caught up), and the records left at the kill."""
    unique = letters(10)
    env, topics = worker_env(bootstrap, redis_url, unique, "event")
    if static:
        env["PATHWATCH_GROUP_INSTANCE_ID"] = f"bench-{unique}"
    env["PATHWATCH_BROKER_SESSION_TIMEOUT"] = "60"  # the default: what a killed member costs
    env["PATHWATCH_BROKER_REBALANCE_TIMEOUT"] = "60"
    group = env["PATHWATCH_APP_ID"]
    offsets.create([topics[k] for k in ("events", "hl7", "fhir")])
    asyncio.run(produce(bootstrap, topics["events"], items))
    events_end = offsets.ends(topics["events"])
    port = int(env["PATHWATCH_WEB_PORT"])
    first = start_worker(f"pathwatch-{unique}-a", env, tmp, children, None)
    started = wait_first_event(first, port)
    time.sleep(max(0.0, started + after - time.time()))
    first.proc.kill()
    first.proc.wait()
    left = sum(events_end.values()) - sum(offsets.committed(group, topics["events"]).values())
    restart = time.time()
    second = start_worker(f"pathwatch-{unique}-b", env, tmp, children, None)
    done = wait_until("the restarted worker to catch up",
                      lambda: offsets.caught_up(group, topics["events"], events_end), 900, 0.1, second)
    second.stop()
    membership = "static membership (PATHWATCH_GROUP_INSTANCE_ID)" if static else "dynamic membership"
    return [f"SIGKILL {after:.0f} s into {len(items):,} events, {membership}, session timeout 60 s: "
            f"restart -> caught up {done - restart:.1f} s ({left:,} records left at the kill)"]


def stage1_alone(bootstrap: str, redis_url: str, items: Items, offsets: Offsets, tmp: Path,
                 children: list[Child]) -> Rate:
    """Decode here, publish the internal events to ``clients``, time a worker's stage 1 alone."""
    unique = letters(10)
    env, topics = worker_env(bootstrap, redis_url, unique, "event")
    group = env["PATHWATCH_APP_ID"]
    offsets.create([topics[k] for k in ("events", "hl7", "fhir", "clients")])
    decoder = Decoder(KEY.encode(), 1 << 20)
    ingested: Items = []
    for _, value in items:
        event = decoder.decode(value, Origin())
        if isinstance(event, Event):  # dead letters never reach the clients topic
            ingested.append((event.client.encode(), encode_event(event)))
    asyncio.run(produce(bootstrap, topics["clients"], ingested))
    clients_end = offsets.ends(topics["clients"])
    port = int(env["PATHWATCH_WEB_PORT"])
    child = start_worker(f"pathwatch-{unique}", env, tmp, children, None)
    first = wait_first_event(child, port)
    done = wait_until("stage 1 to commit everything",
                      lambda: offsets.caught_up(group, topics["clients"], clients_end), 600, 0.1, child)
    child.stop()
    return Rate("pathwatch worker: stage 1 alone (pre-ingested)", len(ingested), done - first,
                "first event -> clients committed")


# -- latency --------------------------------------------------------------------------------


@dataclass
class Latency:
    topic: str
    values: list[float]
    sent: int

    def row(self) -> str:
        v = sorted(self.values)
        p50, p99 = percentile(v, 50), percentile(v, 99)
        top = v[-1] if v else float("nan")
        return (f"  {self.topic:<34} {len(v):>6}/{self.sent:<6} p50 {p50 * 1000:8.1f} ms   "
                f"p99 {p99 * 1000:8.1f} ms   max {top * 1000:8.1f} ms")


def _referral(subject: str, n: int, now: datetime) -> bytes:
    t = now - timedelta(days=1)
    return json.dumps(
        {"specversion": "1.0", "id": f"bench-latency-{n}", "source": "bench/latency", "type": "referral.received",
         "time": t.isoformat(), "subject": subject,
         "data": {"referral_id": f"REF-{n}", "team": "north", "urgency": "emergency", "referral_source": "self"}},
        separators=(",", ":"),
    ).encode()


async def _collect(bootstrap: str, topic: str, sent: dict[str, float], arrived: dict[str, float],
                   stop: asyncio.Event) -> None:
    """First arrival time of each client's ReferralWaiting (firing) on ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for messages in batch.values():
                for m in messages:
                    alert = json.loads(m.value)
                    labels = alert.get("labels", {})
                    client = labels.get("client")
                    if labels.get("alertname") == "ReferralWaiting" and client in sent and client not in arrived:
                        arrived[client] = now
    finally:
        await consumer.stop()


def _contact(subject: str, n: int, now: datetime) -> bytes:
    """Background load: an attended contact dated now (kept as the client's history, no alert)."""
    return json.dumps(
        {"specversion": "1.0", "id": f"bench-background-{n}", "source": "bench/latency", "type": "contact",
         "time": now.isoformat(), "subject": subject,
         "data": {"contact_id": f"C-{n}", "team": "north", "status": "attended", "mode": "telephone"}},
        separators=(",", ":"),
    ).encode()


async def _steady_publish(bootstrap: str, topic: str, rate: float, seconds: float, sent: dict[str, float],
                          unique: str, probe_every: int) -> float:
    """Publish ``rate`` events/s for ``seconds``, in 5 ms slots; returns the achieved rate.
    Every ``probe_every``-th event is a probe (fires an alert at once, timed in ``sent``);
    the others are background contacts of other clients."""
    pseudonymiser = Pseudonymiser(KEY.encode())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    try:
        total = int(rate * seconds)
        start = time.perf_counter()
        pending = []
        for n in range(total):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0.002:
                await asyncio.sleep(delay)
            subject = f"LAT-{unique}-{n}"
            key = pseudonymiser.pseudonym(subject)
            if n % probe_every == 0:
                value = _referral(subject, n, datetime.now(UTC))
                sent[key] = time.perf_counter()
            else:
                value = _contact(subject, n, datetime.now(UTC))
            pending.append(await producer.send(topic, value=value, key=key.encode()))
            if len(pending) >= 200:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return total / (time.perf_counter() - start)
    finally:
        await producer.stop()


def latency(bootstrap: str, redis_url: str, rate: float, seconds: float, tmp: Path,
            children: list[Child], probe_every: int = 1, profile: Path | None = None,
            separate_delivery: bool = False) -> tuple[list[Latency], float]:
    unique = letters(10)
    env, topics = worker_env(bootstrap, redis_url, unique, "wall")
    port = int(env["PATHWATCH_WEB_PORT"])
    deliverer = None
    if separate_delivery:
        env["PATHWATCH_DELIVERY"] = "separate"
        deliver_env = {**env, "PATHWATCH_WEB_PORT": str(free_port())}
        deliverer = start_worker(f"pathwatch-deliver-{unique}", deliver_env, tmp, children, None, "deliver")
    child = start_worker(f"pathwatch-wall-{unique}", env, tmp, children, profile)
    wait_ready(child, port)
    if deliverer is not None:
        wait_ready(deliverer, int(deliver_env["PATHWATCH_WEB_PORT"]))

    async def run() -> tuple[list[Latency], float]:
        sent: dict[str, float] = {}
        on_alerts: dict[str, float] = {}
        on_transitions: dict[str, float] = {}
        stop = asyncio.Event()
        collectors = [
            asyncio.create_task(_collect(bootstrap, topics["alerts"], sent, on_alerts, stop)),
            asyncio.create_task(_collect(bootstrap, topics["transitions"], sent, on_transitions, stop)),
        ]
        await asyncio.sleep(2)  # let the collectors' consumers start before the first event
        achieved = await _steady_publish(bootstrap, topics["events"], rate, seconds, sent, unique, probe_every)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(on_alerts) < len(sent) or len(on_transitions) < len(sent)):
            child.check()
            if deliverer is not None:
                deliverer.check()
            await asyncio.sleep(0.25)
        stop.set()
        await asyncio.gather(*collectors)
        results = [
            Latency(f"{topics['alerts']} (delivered)", [on_alerts[k] - sent[k] for k in on_alerts], len(sent)),
            Latency(f"{topics['transitions']} (stage 1)", [on_transitions[k] - sent[k] for k in on_transitions],
                    len(sent)),
        ]
        return results, achieved

    try:
        return asyncio.run(run())
    finally:
        child.stop()
        if deliverer is not None:
            deliverer.stop()


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="simulated events per throughput contender")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rate", type=float, default=1000.0, help="latency phase: events per second")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="latency phase: how long to publish")
    parser.add_argument("--probe-every", type=int, default=1,
                        help="latency phase: every Nth event fires an alert (timed), the rest are background contacts")
    parser.add_argument("--separate-delivery", action="store_true",
                        help="latency phase: the worker runs with PATHWATCH_DELIVERY=separate beside a `pathwatch deliver`")
    parser.add_argument("--bare-take", type=int, default=0, help="also time the bare agent batching with take_events(N)")
    parser.add_argument("--stage1-alone", action="store_true",
                        help="also time a worker's stage 1 on events ingested beforehand")
    parser.add_argument("--profile", type=Path, help="run the throughput worker under cProfile, stats to this file")
    parser.add_argument("--profile-latency", type=Path, help="run the latency worker under cProfile, stats to this file")
    parser.add_argument("--backfill", action="store_true",
                        help="also time a worker with the default settings (wall alert clock) on the same history")
    parser.add_argument("--idle-seconds", type=float, default=60.0,
                        help="backfill: then count client-state changelog records over this long idle")
    parser.add_argument("--sigkill", action="store_true",
                        help="time restart -> caught up after a SIGKILL mid-stream, dynamic then static membership")
    parser.add_argument("--sigkill-after", type=float, default=3.0, help="seconds into the drain to kill the worker")
    parser.add_argument("--skip", choices=["throughput", "latency"], action="append", default=[])
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--commit-interval", type=float, default=COMMIT_INTERVAL,
                        help="seconds between the faust contenders' offset commits (faust's default: 2.8)")
    args = parser.parse_args()
    globals()["COMMIT_INTERVAL"] = args.commit_interval
    if args.profile:
        args.profile = args.profile.resolve()
    if args.profile_latency:
        args.profile_latency = args.profile_latency.resolve()
    bootstrap, redis_url = require_stack()
    command = shlex.join([os.path.relpath(sys.executable, ROOT), os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    marker = letters(6)  # every topic of this run holds it, for the cleanup
    children: list[Child] = []
    offsets = Offsets(bootstrap)
    rates: list[Rate] = []
    notes: list[str] = []
    lat: list[Latency] = []
    achieved = 0.0
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmpname:
        tmp = Path(tmpname)
        try:
            if "throughput" not in args.skip:
                items = simulated_items(args.events, args.seed, tmp)
                print(f"simulated {len(items):,} events; publishing per contender ...", flush=True)
                raw_topic, bare_topic = f"benchraw-{marker}", f"benchbare-{marker}"
                offsets.create([raw_topic, bare_topic])
                for topic in (raw_topic, bare_topic):
                    asyncio.run(produce(bootstrap, topic, items))
                rates.append(asyncio.run(raw_consumer(bootstrap, raw_topic, len(items))))
                print(f"  {rates[-1].name}: {rates[-1].per_second:,.0f} events/s", flush=True)
                outside, inside = bare_faust(bootstrap, bare_topic, f"barefaust-{marker}", len(items), offsets, tmp,
                                             children, 0)
                rates += [outside, inside]
                print(f"  {outside.name}: {outside.per_second:,.0f} events/s (in-process {inside.per_second:,.0f})",
                      flush=True)
                if args.bare_take:
                    take_topic = f"benchtake-{marker}"
                    offsets.create([take_topic])
                    asyncio.run(produce(bootstrap, take_topic, items))
                    rates += list(bare_faust(bootstrap, take_topic, f"baretake-{marker}", len(items), offsets, tmp,
                                             children, args.bare_take))
                worker_rates, _, worker_notes = pathwatch_worker(bootstrap, redis_url, items, offsets, tmp, children,
                                                                 args.profile)
                rates += worker_rates
                notes += worker_notes
                print(f"  {worker_rates[1].name}: {worker_rates[1].per_second:,.0f} events/s", flush=True)
                if args.backfill:
                    worker_rates, _, worker_notes = pathwatch_worker(
                        bootstrap, redis_url, items, offsets, tmp, children, None, "wall", args.idle_seconds)
                    rates += worker_rates
                    notes += worker_notes
                    print(f"  {worker_rates[0].name}: {worker_rates[0].per_second:,.0f} events/s", flush=True)
            if args.sigkill:
                items = items if "throughput" not in args.skip else simulated_items(args.events, args.seed, tmp)
                for static in (False, True):
                    notes += sigkill_recovery(bootstrap, redis_url, items, offsets, tmp, children, static,
                                              args.sigkill_after)
                    print(f"  {notes[-1]}", flush=True)
                if args.stage1_alone:
                    rates.append(stage1_alone(bootstrap, redis_url, items, offsets, tmp, children))
                    print(f"  {rates[-1].name}: {rates[-1].per_second:,.0f} events/s", flush=True)
            if "latency" not in args.skip:
                print(f"latency: {args.rate:,.0f} events/s for {args.latency_seconds:.0f} s ...", flush=True)
                lat, achieved = latency(bootstrap, redis_url, args.rate, args.latency_seconds, tmp, children,
                                        args.probe_every, args.profile_latency, args.separate_delivery)
        finally:
            for child in children:
                child.stop()
            offsets_deleted = 0
            if not args.keep_topics:
                for child_unique in {marker, *(c.name.rsplit("-", 1)[-1] for c in children)}:
                    try:
                        offsets_deleted += offsets.delete_matching(child_unique)
                    except Exception as exc:  # noqa: BLE001 - cleanup is best effort
                        print(f"could not delete topics matching {child_unique}: {exc}", file=sys.stderr)
            offsets.close()

    print()
    print(f"command: {command}")
    print(f"broker: Kafka at {bootstrap}, {PARTITIONS} partitions; {os.cpu_count()} cores; "
          f"total {time.monotonic() - started:.0f} s; load average {load_before:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end (other processes on the machine skew every figure)")
    if rates:
        print()
        print(f"  {'throughput':<44} {'events':>8} {'seconds':>8} {'events/s':>10}   how timed")
        for r in rates:
            print(f"  {r.name:<44} {r.events:>8,} {r.seconds:>8.2f} {r.per_second:>10,.0f}   {r.note}")
        by_name = {r.name: r for r in rates}
        worker = by_name["pathwatch worker: through stage 1"]
        raw = by_name["raw aiokafka consumer (json.loads)"]
        bare = by_name["bare faust agent"]
        print()
        print(f"  worker (stage 1) / bare faust agent: {worker.per_second / bare.per_second:.2f} x   (target >= 1.0)")
        print(f"  worker (stage 1) / raw consumer:     {worker.per_second / raw.per_second:.2f} x")
        print(f"  bare faust agent / raw consumer:     {bare.per_second / raw.per_second:.2f} x")
        ticks = by_name["pathwatch worker: stage 1 and ticks"]
        print(f"  stage 1 and ticks / bare faust agent: {ticks.per_second / bare.per_second:.2f} x")
        alone = by_name.get("pathwatch worker: stage 1 alone (pre-ingested)")
        if alone is not None:
            print(f"  stage 1 alone / bare faust agent:    {alone.per_second / bare.per_second:.2f} x")
        backfill = by_name.get("pathwatch worker, wall clock (backfill): through stage 1")
        if backfill is not None:
            print(f"  backfill (wall clock) / worker (event clock): {backfill.per_second / worker.per_second:.2f} x")
    if notes:
        print()
    for note in notes:
        print(f"  {note}")
    if lat:
        print()
        probes = "every event" if args.probe_every == 1 else f"every {args.probe_every}th event, contacts between"
        where = "a separate `pathwatch deliver`" if args.separate_delivery else "the worker"
        print(f"  event -> alert latency at {achieved:,.0f} events/s (wall alert clock, ReferralWaiting on {probes}; "
              f"delivery in {where}):")
        for entry in lat:
            print(entry.row())
        print("  (target: p99 < 1 s)")
    if args.profile:
        print(f"\nprofile of the throughput worker: {args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
