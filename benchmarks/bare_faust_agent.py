"""The baseline of ``bench_live.py``: a bare faust agent that only deserialises (not a test).

Run by the benchmark as a real worker subprocess::

    BARE_BOOTSTRAP=127.0.0.1:9092 BARE_TOPIC=events-x BARE_APP_ID=bare-x BARE_PARTITIONS=8 \\
    BARE_OUT=/tmp/bare.json .venv/bin/python benchmarks/bare_faust_agent.py worker -l warning

It reads raw bytes from ``BARE_TOPIC`` with faust's default per-event iteration (the same
broker settings as ``streams.app``: raw codec, earliest offset) and ``json.loads`` each value.
It writes ``{"first": t, "last": t, "count": n}`` (wall-clock seconds) to ``BARE_OUT`` when
it sees its first message, every 1,000 messages and at ``BARE_EXPECT`` messages, so the benchmark can time it both
from inside (first to last message) and from outside (committed offsets of its group).
With ``BARE_TAKE=N`` it iterates in batches of up to N events (``stream.take_events``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import faust

_RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}

partitions = int(os.environ.get("BARE_PARTITIONS", "8"))
app = faust.App(
    os.environ.get("BARE_APP_ID", "bare-faust"),
    broker=f"kafka://{os.environ.get('BARE_BOOTSTRAP', 'localhost:9092')}",
    store="memory://",
    web_enabled=False,
    topic_partitions=partitions,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    broker_commit_interval=float(os.environ.get("BARE_COMMIT_INTERVAL", "2.8")),
)
topic = app.topic(os.environ.get("BARE_TOPIC", "bare-events"), partitions=partitions, **_RAW)
out = Path(os.environ.get("BARE_OUT", "bare-faust.json"))
take = int(os.environ.get("BARE_TAKE", "0"))
expect = int(os.environ.get("BARE_EXPECT", "0"))


class _Clock:
    """First and last message times; written out at the first message and every 1,000."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.count = 0

    def seen(self, n: int) -> None:
        now = time.time()
        if self.first is None:
            self.first = now
            self._write(now)
        before = self.count
        self.count += n
        if self.count // 1000 != before // 1000 or before < expect <= self.count:
            self._write(now)

    def _write(self, now: float) -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"first": self.first, "last": now, "count": self.count}))
        tmp.replace(out)


clock = _Clock()


@app.agent(topic, name="bare-deserialise")
async def bare(stream: Any) -> None:
    if take:
        async for batch in stream.take_events(take, within=0.05):
            for event in batch:
                json.loads(event.value)
            clock.seen(len(batch))
        return
    async for value in stream:
        json.loads(value)
        clock.seen(1)


if __name__ == "__main__":
    app.main()
