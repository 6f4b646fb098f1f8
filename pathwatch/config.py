"""Settings: one frozen object, read once at the entry point and passed in (STYLE.md 6, 7).

Sources, highest first: keyword arguments, ``PATHWATCH_*`` environment variables, a TOML
file given with ``--config``, defaults. Durations accept ``72h``, ``30m``, ``7d``, ``90s``
or a number of seconds. Nested mappings (targets, topics) are given in TOML or as JSON in
the environment (``PATHWATCH_RATE_TARGETS='{"followup_7d": 0.75}'``).
"""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from schemas import catalogue
from streams.core import CoreConfig
from streams.ports import LiveConfig, TopicNames

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> Any:
    """Turn ``"72h"``-style text or a number of seconds into a ``timedelta``."""
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration such as 72h, 30m, 7d or 90s")
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

DEFAULT_RATE_TARGETS = dict(catalogue.DEFAULT_RATE_TARGETS)
FREQUENT_CRISIS_DEFINITIONS = {"3-in-30": (3, 30), "3-in-60": (3, 60), "5-in-365": (5, 365)}
DEV_PSEUDONYM_KEY = "pathwatch-development-key-not-for-live-use"
_CORE, _LIVE = CoreConfig(), LiveConfig()


class Settings(BaseSettings):
    """Every setting pathwatch reads. Build once with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="PATHWATCH_", frozen=True, extra="forbid", env_nested_delimiter="__"
    )
    toml_file: ClassVar[Path | None] = None

    # Defaults of settings that configure a library part are the part's own (_CORE, _LIVE).

    # Time (DOMAIN.md section 2)
    timezone: str = _CORE.timezone
    holidays: str = _CORE.holidays_country
    holidays_subdivision: str | None = _CORE.holidays_subdivision
    allowed_lateness: Duration = _CORE.allowed_lateness

    # Measures (section 3)
    window_days: int = Field(_CORE.window_days, ge=1)
    referral_open_limit_days: int = Field(_CORE.referral_open_limit_days, ge=1)
    target_emergency_hours: float = Field(_CORE.target_emergency_hours, gt=0)
    target_urgent_business_days: int = Field(_CORE.target_urgent_business_days, ge=0)
    target_routine_business_days: int = Field(_CORE.target_routine_business_days, ge=0)
    frequent_crisis: str = "3-in-30"
    team_memory_days: int | None = Field(_CORE.team_memory_days, ge=1)  # responsible-team look-back; None: no limit

    # Alerts (section 4)
    rate_targets: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_RATE_TARGETS))
    rate_min_denominator: int = Field(10, ge=1)
    spc_baseline_points: int = Field(12, ge=12)
    spc_confirm_weeks: int = Field(1, ge=1)  # SpecialCause needs this many signalling weeks in a row
    spc_min_weekly_denominator: int = Field(10, ge=0)  # SPC judges only weeks with at least this many cases
    spc_rebase: dict[str, str] = Field(default_factory=dict)  # "team/measure" -> ISO date of the rebase
    spc_screen_outliers: bool = True  # drop moving ranges >= 3.267 x their mean before setting limits
    alert_routes: dict[str, str] = Field(default_factory=dict)  # receiver name -> label matchers
    alert_clock: Literal["wall", "event"] = _LIVE.alert_clock  # live care-gap alerts fire by the wall clock
    runbook_url: str = "https://github.com/pathwatch/pathwatch/blob/main/docs/runbook.md"
    alertmanager_url: str | None = None
    alertmanager_resend: Duration = timedelta(minutes=1)
    webhook_url: str | None = None
    webhook_token: SecretStr | None = None

    # Privacy (section 5)
    pseudonym_key: SecretStr | None = None
    allow_dev_key: bool = False
    small_cell: int = Field(5, ge=0)
    suppression: Literal["small_cell", "cms"] = "small_cell"  # board report: under small_cell, or CMS 1-10

    # Board report (docs/board.md)
    provider_name: str = "Provider"
    cost_table: Path | None = None  # the provider's unit costs (TOML); no table, no value section
    value_deadweight: float = Field(0.0, ge=0.0, lt=1.0)  # share of the avoided events that would have been avoided anyway

    # Input
    max_message_bytes: int = Field(1024 * 1024, ge=1024)
    # the provider's teams; when set, an event naming another team is a dead letter (decode)
    teams: list[str] = Field(default_factory=list)
    psychiatric_services: list[str] = Field(default_factory=lambda: ["PSY", "PSI", "MH"])
    psychiatric_diagnosis_prefixes: list[str] = Field(default_factory=lambda: ["F", "X7", "X80", "X81", "X82", "X83"])
    # identifier systems that link people across publishers, in order of preference (HL7 PID-3.4
    # or PID-3.5, FHIR identifier.system); see schemas.adapters.choose_subject and docs/events.md
    linking_identifier_systems: list[str] = Field(default_factory=list)

    # Live stack
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # a plain dataclass, not a settings class: its values come only through these settings
    # (PATHWATCH_TOPICS__EVENTS, TOML [topics]), never from unprefixed variables such as EVENTS
    topics: TopicNames = Field(default_factory=TopicNames)
    partitions: int = Field(_LIVE.partitions, ge=1)
    # retention of the dead-letter topic, set when the topic is created; it holds the original
    # bytes of rejected input, raw client identifiers included (docs/configuration.md)
    dead_letter_retention: Duration = timedelta(days=30)
    replication_factor: int = Field(1, ge=1)
    app_id: str = _LIVE.app_id
    # where alert transitions are delivered (Alertmanager, webhooks, the alerts topic): "worker"
    # runs delivery inside every worker; "separate" leaves it to `pathwatch deliver` processes
    # (consumer group "<app_id>-deliver"), so delivery does not share a worker's event loop
    delivery: Literal["worker", "separate"] = _LIVE.delivery
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    broker_session_timeout: float = 60.0
    broker_heartbeat_interval: float = 3.0
    broker_rebalance_timeout: float = 60.0
    # static group membership (Kafka's group.instance.id): a stable name per worker, e.g. its
    # pod name; a worker restarted with the same name takes its partitions back at once
    # instead of after the killed one's session timeout. Unset: dynamic membership.
    group_instance_id: str | None = None
    tick_interval: Duration = _LIVE.tick_interval
    # stage 1 and 2: longest wait to fill a batch. A backlog fills batches without waiting
    # (bench_live throughput: 1.31 and 1.45 x the bare agent at 50 ms, 1.34 and 1.22 x at
    # 250 ms); at a steady 1,000 events/s, 250 ms added its own length to every event's wait
    batch_wait: Duration = _LIVE.batch_wait
    # stage 1: most input messages in one batch (a backlog is read in batches this large: each
    # touched client and partition is written once per batch; bench_live: 4,000 against 1,000
    # gave 1.06 and 1.10 x a bare faust agent against 0.88 and 0.98 x)
    batch_max: int = Field(_LIVE.batch_max, ge=1)
    commit_interval: Duration = timedelta(seconds=2.8)  # faust's broker_commit_interval (its default)
    store: str = _LIVE.store
    data_dir: Path | None = None  # faust's local directory; None: "<app_id>-data" in the working directory

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone name") from exc
        return value

    @field_validator("frequent_crisis")
    @classmethod
    def _known_definition(cls, value: str) -> str:
        if value not in FREQUENT_CRISIS_DEFINITIONS:
            names = ", ".join(FREQUENT_CRISIS_DEFINITIONS)
            raise ValueError(f"{value!r} is not one of {names}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file))
        return tuple(sources)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def frequent_crisis_rule(self) -> tuple[int, int]:
        """(K crises, D days) of the configured frequent-crisis definition."""
        return FREQUENT_CRISIS_DEFINITIONS[self.frequent_crisis]

    def pseudonym_key_bytes(self, *, live: bool) -> bytes:
        """The HMAC key. Live workers refuse to start without one unless ``allow_dev_key``.

        Raises ``ValueError`` when ``live`` and no key is set and the dev flag is off.
        A replay without a key uses :data:`DEV_PSEUDONYM_KEY`; the caller warns.
        """
        if self.pseudonym_key is not None:
            return self.pseudonym_key.get_secret_value().encode()
        if live and not self.allow_dev_key:
            raise ValueError(
                "PATHWATCH_PSEUDONYM_KEY is not set: live workers refuse to start without it "
                "(set PATHWATCH_ALLOW_DEV_KEY=true only for local testing)"
            )
        return DEV_PSEUDONYM_KEY.encode()

    def masked(self) -> dict[str, Any]:
        """A dump for the start-up log: secrets show as ``**********``."""
        return self.model_dump(mode="json")


class SettingsFileError(ValueError):
    """The ``--config`` file is missing, unreadable or not TOML; the message names the file
    (and the line of a syntax error)."""


def check_toml_file(path: Path) -> None:
    """Raise :class:`SettingsFileError` unless ``path`` is a readable TOML file.

    pydantic-settings reads a missing TOML file as empty and reports a syntax error without
    the file's name, so the file is checked before it is handed over."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SettingsFileError(f"{path}: no such file (given with --config)") from None
    except IsADirectoryError:
        raise SettingsFileError(f"{path}: is a directory, not a TOML file (given with --config)") from None
    except OSError as exc:
        raise SettingsFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise SettingsFileError(f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileError(f"{path}: TOML syntax error: {exc}") from None


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Read settings once (the composition root calls this; nothing else reads the environment).

    Raises :class:`SettingsFileError` when ``config`` is given but missing or not TOML, and
    pydantic's ``ValidationError`` when a value is invalid or a TOML key is not a setting."""
    if config is not None:
        check_toml_file(config)

    class _Loaded(Settings):
        toml_file: ClassVar[Path | None] = config

    loaded = _Loaded(**overrides)
    return Settings.model_construct(**{name: getattr(loaded, name) for name in Settings.model_fields})
