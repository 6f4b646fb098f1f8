"""Every sample name pathwatch's metric bundles export, for the dashboard and rule tests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pathwatch.mdc_metrics import MdcMetrics
from pathwatch.metrics import Metrics


def metric_names() -> frozenset[str]:
    """Every sample name the bundle exports (``_total``, ``_bucket`` etc. included).

    Used by the dashboard and rule tests to check that each PromQL expression names only
    catalogued metrics. Builds a throwaway bundle on a fresh registry.
    """
    registry = CollectorRegistry()
    Metrics(registry)
    MdcMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.update({f"{family.name}_total", f"{family.name}_created"})
        elif family.type == "histogram":
            names.update({f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum", "created")})
        else:
            names.add(family.name)
    return frozenset(names)
