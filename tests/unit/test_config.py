"""Settings: environment and TOML sources, durations, refusal without a pseudonym key, masking."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from pathwatch.config import DEV_PSEUDONYM_KEY, load_settings, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [("72h", timedelta(hours=72)), ("30m", timedelta(minutes=30)), ("7d", timedelta(days=7)),
     ("90s", timedelta(seconds=90)), ("15", timedelta(seconds=15)), (3600, timedelta(hours=1))],
)
def test_durations(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_bad_duration_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_defaults_follow_the_domain_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PATHWATCH_TIMEZONE", "PATHWATCH_HOLIDAYS", "PATHWATCH_ALLOWED_LATENESS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.timezone == "UTC"
    assert settings.holidays == "US"
    assert settings.allowed_lateness == timedelta(hours=72)
    assert settings.rate_targets == {"followup_72h": 0.80, "followup_7d": 0.70, "seen_within_target": 0.80}
    assert settings.frequent_crisis_rule == (3, 30)


def test_environment_then_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "pathwatch.toml"
    toml.write_text('timezone = "Europe/London"\nallowed_lateness = "48h"\nwindow_days = 14\n')
    monkeypatch.setenv("PATHWATCH_TIMEZONE", "America/New_York")
    settings = load_settings(toml)
    assert settings.timezone == "America/New_York"  # the environment wins
    assert settings.allowed_lateness == timedelta(hours=48)
    assert settings.window_days == 14


def test_unknown_timezone_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHWATCH_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValidationError, match="IANA"):
        load_settings()


def test_live_refuses_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATHWATCH_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("PATHWATCH_ALLOW_DEV_KEY", raising=False)
    settings = load_settings()
    with pytest.raises(ValueError, match="refuse to start"):
        settings.pseudonym_key_bytes(live=True)
    assert settings.pseudonym_key_bytes(live=False) == DEV_PSEUDONYM_KEY.encode()


def test_secret_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHWATCH_PSEUDONYM_KEY", "s3cret-key-value")
    settings = load_settings()
    assert settings.pseudonym_key_bytes(live=True) == b"s3cret-key-value"
    assert "s3cret-key-value" not in str(settings.masked())
    assert "s3cret-key-value" not in repr(settings)


def test_worker_data_dir_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pathwatch.bootstrap import build_worker_app as build_app

    monkeypatch.setenv("PATHWATCH_PSEUDONYM_KEY", "k")
    monkeypatch.setenv("PATHWATCH_DATA_DIR", str(tmp_path / "faust"))
    app, _ = build_app(load_settings())
    assert Path(app.conf.datadir) == tmp_path / "faust"
    monkeypatch.delenv("PATHWATCH_DATA_DIR")
    app, _ = build_app(load_settings())
    assert Path(app.conf.datadir).name == f"{load_settings().app_id}-data"


def test_only_the_memory_store_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathwatch.bootstrap import build_worker_app as build_app

    monkeypatch.setenv("PATHWATCH_PSEUDONYM_KEY", "k")
    monkeypatch.setenv("PATHWATCH_STORE", "rocksdb://")
    with pytest.raises(ValueError, match="not supported"):
        build_app(load_settings())


def test_topic_names_come_only_from_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTS", "stray")  # a host's unrelated variable must not rename a topic
    monkeypatch.setenv("PATHWATCH_TOPICS__ALERTS", "provider.alerts")
    topics = load_settings().topics
    assert topics.events == "pathwatch.events"
    assert topics.alerts == "provider.alerts"


def test_topic_names_from_toml_are_the_live_runtimes(tmp_path: Path) -> None:
    """The settings' topics are the live stages' (one class, no copy in between); a name
    the settings do not know is refused."""
    from pathwatch.bootstrap import live_config

    toml = tmp_path / "p.toml"
    toml.write_text('[topics]\nclients = "provider.clients"\n')
    settings = load_settings(toml)
    assert live_config(settings).topics.clients == "provider.clients"
    assert live_config(settings).topics.events == "pathwatch.events"
    toml.write_text('[topics]\nclient = "provider.clients"\n')
    with pytest.raises(ValidationError, match="client"):
        load_settings(toml)


def test_default_settings_build_the_parts_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings' defaults are the library parts' own: the parts built from settings left
    at their defaults are the parts' defaults (faust's options are still written twice)."""
    import os

    from pathwatch.bootstrap import faust_options, live_config
    from pathwatch.parts import core_config
    from streams.core import CoreConfig
    from streams.faust_io import FaustOptions
    from streams.ports import LiveConfig

    for name in [n for n in os.environ if n.startswith("PATHWATCH_")]:
        monkeypatch.delenv(name)
    settings = load_settings()
    assert live_config(settings) == LiveConfig()
    assert core_config(settings) == CoreConfig()
    assert faust_options(settings) == FaustOptions()
