"""docker-compose.yml cannot run here (no Docker engine); keep it valid and true to scripts/stack."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service() -> None:
    assert set(COMPOSE["services"]) == {"kafka", "redis", "alertmanager", "worker", "deliver", "prometheus", "grafana"}


def test_every_referenced_file_exists() -> None:
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            host = volume.split(":", 1)[0]
            if host in COMPOSE.get("volumes", {}):
                continue  # a named volume, not a file of the repository
            assert (ROOT / host).exists(), f"{name} mounts {host}, which is missing"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name


def test_ports_are_published_once() -> None:
    published = [p.split(":")[0] for s in COMPOSE["services"].values() for p in s.get("ports", [])]
    assert len(published) == len(set(published))
    assert {"9092", "6379", "9093", "9090", "3000", "6066"} <= set(published)


def test_kafka_mirrors_the_stack_script() -> None:
    pom = (ROOT / "deploy/kafka/pom.xml").read_text()
    version = re.search(r"<kafka.version>(.+)</kafka.version>", pom)
    assert version is not None
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{version.group(1)}"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    script = (ROOT / "scripts/stack").read_text()
    for key in ("offsets.topic.replication.factor=1", "group.initial.rebalance.delay.ms=0", "offsets.topic.num.partitions=8"):
        assert key in script
        env_name = "KAFKA_" + key.split("=")[0].upper().replace(".", "_")
        assert env[env_name] == key.split("=")[1], env_name


def test_worker_needs_a_pseudonym_key() -> None:
    env = COMPOSE["services"]["worker"]["environment"]
    assert env["PATHWATCH_PSEUDONYM_KEY"].startswith("${PATHWATCH_PSEUDONYM_KEY:?")
    assert env["PATHWATCH_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_the_worker_leaves_delivery_to_the_deliver_service() -> None:
    worker, deliver = COMPOSE["services"]["worker"], COMPOSE["services"]["deliver"]
    assert worker["environment"]["PATHWATCH_DELIVERY"] == "separate"
    assert deliver["command"] == ["pathwatch", "deliver"]
    for name in ("PATHWATCH_KAFKA_BOOTSTRAP", "PATHWATCH_REDIS_URL", "PATHWATCH_ALERTMANAGER_URL", "PATHWATCH_WEB_PORT"):
        assert deliver["environment"][name] == worker["environment"][name], name
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "pathwatch")
    assert job["dns_sd_configs"][0]["names"] == ["worker", "deliver"]


def test_redis_persists_with_aof_like_the_stack() -> None:
    """Redis holds the notification log: a restart must not forget what was delivered
    (issue 14, point 3). Both the local stack and compose append every write, fsync each second."""
    command = COMPOSE["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert any(v.split(":", 1)[1] == "/data" for v in COMPOSE["services"]["redis"].get("volumes", []))
    assert "redis-data" in COMPOSE.get("volumes", {})
    script = (ROOT / "scripts/stack").read_text()
    start = script[script.index("start_redis() {") :]
    start = start[: start.index("\n}\n")]
    assert "--appendonly yes" in start
    assert "--appendfsync everysec" in start
    assert '--dir "$STACK_DIR/redis"' in start


def test_the_local_prometheus_mirrors_the_compose_one() -> None:
    """scripts/stack runs Prometheus from prometheus-local.yml; compose from prometheus.yml:
    same intervals, jobs, rules and an Alertmanager; only the addresses differ."""
    compose = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    local = yaml.safe_load((ROOT / "deploy/prometheus/prometheus-local.yml").read_text())
    assert local["global"] == compose["global"]
    assert [j["job_name"] for j in local["scrape_configs"]] == [j["job_name"] for j in compose["scrape_configs"]]
    assert [Path(r).name for r in local["rule_files"]] == [Path(r).name for r in compose["rule_files"]]
    assert local["rule_files"] == ["@ROOT@/deploy/prometheus/rules/*.yml"]
    assert local["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:@ALERTMANAGER_PORT@"]
    job = next(j for j in local["scrape_configs"] if j["job_name"] == "pathwatch")
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:6066", "127.0.0.1:6067"]
    assert "prometheus" in COMPOSE["services"]
    script = (ROOT / "scripts/stack").read_text()
    assert "deploy/prometheus/prometheus-local.yml" in script
    assert "services=(kafka redis alertmanager prometheus)" in script
