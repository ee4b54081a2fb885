"""Prometheus metrics of the operator, served on their own port.

Each ``Metrics`` has its own ``CollectorRegistry`` so that several operators in one test process (and
the benchmark) never share counters, and the process collectors of the default registry are added
only for the real command line.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.process_collector import ProcessCollector

RESULTS = ("created", "updated", "unchanged", "invalid", "conflict", "error")
# What the injection webhook did with a labelled pod (admission.py): wired it, found it wired already,
# admitted it uninjected with the reason in an annotation (failurePolicy Ignore), or refused it (Fail).
INJECTIONS = ("injected", "unchanged", "annotated", "refused")


class Metrics:
    """The operator's counters; the reconciler reports into it, Prometheus scrapes it."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "progset_operator_reconciles", "ProgramSet reconciles by result: created/updated/unchanged "
            "ConfigMap, invalid spec, conflicting ConfigMap, or error.", ["result"], registry=self.registry)
        self.duration = Histogram(
            "progset_operator_reconcile_duration_seconds", "Time to reconcile one ProgramSet, API calls included.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=self.registry)
        self.programsets = Gauge(
            "progset_operator_programsets", "ProgramSets known to this operator, by whether their spec is valid.",
            ["valid"], registry=self.registry)
        self.repairs = Counter(
            "progset_operator_configmap_repairs", "Rendered ConfigMaps restored after someone edited or "
            "deleted them.", registry=self.registry)
        self.injections = Counter(
            "progset_operator_injections", "Labelled pods the injection webhook saw, by outcome: injected, "
            "unchanged (already wired), annotated (admitted uninjected, failurePolicy Ignore) or refused.",
            ["result"], registry=self.registry)
        self.uninjected = Gauge(
            "progset_operator_uninjected_pods", "Pods labelled progset.io/programset that run without the "
            "progset sidecar (the webhook was not called, failed, or could not wire them).", registry=self.registry)
        self.uninjected_seen = Counter(
            "progset_operator_uninjected_pods_seen", "Pods labelled progset.io/programset found without the "
            "progset sidecar since the operator started (one Warning event each).", registry=self.registry)
        self.certificate_renewals = Counter(
            "progset_operator_webhook_certificate_renewals", "Self-signed webhook certificates the operator "
            "created or renewed (kept in its Secret).", registry=self.registry)
        for result in RESULTS:
            self.reconciles.labels(result=result)
        for result in INJECTIONS:
            self.injections.labels(result=result)
        self.set_programsets(valid=0, invalid=0)

    def set_programsets(self, *, valid: int, invalid: int) -> None:
        self.programsets.labels(valid="true").set(valid)
        self.programsets.labels(valid="false").set(invalid)

    def count(self, result: str) -> None:
        self.reconciles.labels(result=result).inc()

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's current value (0 when absent); for logs, tests and the benchmark."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0


def serve(metrics: Metrics, port: int, address: str = "0.0.0.0") -> tuple[WSGIServer, threading.Thread]:
    """Start the /metrics HTTP server in a daemon thread (with process metrics of this process)."""
    ProcessCollector(registry=metrics.registry)
    return start_http_server(port, addr=address, registry=metrics.registry)
