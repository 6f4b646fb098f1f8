"""A minimal faust app for the foundation smoke test: counts words into a changelog-backed table.

Run as a real worker subprocess: ``python -m tests.integration.faust_smoke_app worker``.
Configuration from the environment (this is a test program, not library code).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faust

app = faust.App(
    os.environ.get("SMOKE_APP_ID", "pathwatch-smoke"),
    broker=f"kafka://{os.environ['PATHWATCH_KAFKA_BOOTSTRAP']}",
    store="memory://",
    web_enabled=True,
    web_bind="127.0.0.1",
    web_port=int(os.environ.get("SMOKE_WEB_PORT", "6066")),
    web_tables_enabled=False,
    topic_partitions=2,
    topic_replication_factor=1,
    producer_acks=-1,
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    broker_rebalance_timeout=20,
    consumer_auto_offset_reset="earliest",
    datadir=os.environ.get("SMOKE_DATA_DIR", "{conf.name}-data"),  # the test gives a temporary one
)
words = app.topic(os.environ.get("SMOKE_TOPIC", "smoke-words"), value_type=str, key_type=str, partitions=2)
counts = app.Table("smoke-counts", default=int, partitions=2)
done_topic = app.topic(os.environ.get("SMOKE_DONE_TOPIC", "smoke-done"), value_type=str, partitions=1)


@app.agent(words)
async def count(stream: Any) -> None:
    async for _key, word in stream.items():
        counts[word] += 1
        await done_topic.send(value=f"{word}={counts[word]}")


@app.timer(1.0)
async def snapshot() -> None:
    """Write the table as this worker process holds it to ``SMOKE_STATE_FILE`` (a read:
    legal outside stream iteration; a file, so the check needs no producer)."""
    path = Path(os.environ.get("SMOKE_STATE_FILE", "smoke-state.json"))
    path.with_suffix(".tmp").write_text(json.dumps({"pid": os.getpid(), "counts": dict(counts.items())}))
    path.with_suffix(".tmp").replace(path)


if __name__ == "__main__":
    app.main()
