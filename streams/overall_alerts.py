"""The system alerts of the all-teams series ``*`` live (issue 17 item 5; docs/spc.md).

Stage 2 evaluates the system rules per team, on the teams a worker holds, once per local day
of its watermark (:class:`streams.stages.Stage2Loop`). ``*`` needs every team, so the worker
that holds ``*``'s stage-2 partition (the one that draws the ``*`` charts,
``streams.live_overall``) evaluates it from the shares topic: every share is stamped with the
watermark of the worker that sent it, each stage-2 partition has a mark so stamped, and
:meth:`OverallAlerts.step` evaluates ``*``'s SpecialCause when the lowest of those watermarks
enters a local day (:class:`streams.runner.DayBoundary`, the replay's schedule), at that
watermark. Until every stage-2 partition has a mark it evaluates nothing.

RateOffTarget of ``*`` is not raised here: a share carries weekly counts, not the trailing
window; the Prometheus rule ``RateOffTarget`` on ``team="*"`` raises it (docs/metrics.md).

The firing state of ``*`` is kept on the shares topic (:data:`streams.live_overall.ALERTS_KEY`)
after every transition, so a worker that takes ``*`` over after a rebalance or a restart
starts from it: an open ``*`` alert carries on with its ``startsAt`` and resolves when its
finding goes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from alerts.model import Alert
from alerts.rules import AlertRulesConfig, SystemAlertRules
from schemas.model import ALL_TEAMS
from streams.calendar import from_us
from streams.core import CoreConfig
from streams.live_overall import Shares
from streams.runner import DayBoundary


@dataclass(slots=True)
class OverallStep:
    """What one :meth:`OverallAlerts.step` leaves to send: the transitions of ``*`` and, when
    there are any, the firing state of ``*`` to keep (None: nothing to keep)."""

    alerts: list[Alert] = field(default_factory=list)
    state: bytes | None = None


class OverallAlerts:
    """SpecialCause of ``*`` over the shares, at the lowest share watermark, once per local day.

    Build one when a worker takes ``*`` (and drop it when it loses it): the first step loads
    the state kept on the topic and evaluates at once (``DayBoundary(first=True)``, as stage
    2 does after a restart). Not thread-safe.
    """

    def __init__(self, config: AlertRulesConfig, core: CoreConfig, partitions: int) -> None:
        self.rules = SystemAlertRules(config)
        self.core = core
        self.partitions = partitions
        self.days = DayBoundary(core.calendar, first=True)
        self._loaded = False

    def step(self, shares: Shares) -> OverallStep:
        """Evaluate ``*`` if the lowest watermark of ``shares`` entered a local day since the
        last step (the first step loads the state kept on the topic; one that is not a
        :meth:`alerts.rules.SystemAlertRules.dump` is ignored)."""
        lowest = shares.lowest(self.partitions)
        if lowest is None or not self.days.cross(lowest):
            return OverallStep()
        if not self._loaded:
            self._loaded = True
            if shares.alert_state is not None:
                with contextlib.suppress(ValueError):  # not a dump: the alerts start afresh
                    self.rules.load(shares.alert_state, ALL_TEAMS)
        windows = shares.windows(self.core)
        alerts = self.rules.evaluate_special_cause(windows, from_us(lowest), ALL_TEAMS)
        return OverallStep(alerts, self.rules.dump(ALL_TEAMS) if alerts else None)


__all__ = ["OverallAlerts", "OverallStep"]
