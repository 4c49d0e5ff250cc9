"""Prometheus metrics of one daemon: counts by message type and outcome, and intake latency.

Each daemon owns its own CollectorRegistry (passed down), so tests and several daemons in one process don't
share counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self._message_children: dict[tuple[str, str, str], Counter] = {}
        self._intake_children: dict[str, Histogram] = {}
        self.messages = Counter(
            "switchd_messages",
            "Inbound messages by channel, message type and outcome",
            ["channel", "message_type", "outcome"],
            registry=r,
        )
        self.intake_seconds = Histogram(
            "switchd_intake_seconds",
            "Time from receipt to the sender's answer (parse, validate, durable journal)",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "switchd_http_requests", "HTTP requests by method and status", ["method", "status"], registry=r
        )
        self.ready = Gauge("switchd_ready", "1 when the daemon accepts messages", registry=r)
        self.inflight = Gauge("switchd_inflight_messages", "Messages being processed", registry=r)
        self.intake_workers_warm = Gauge(
            "switchd_intake_workers_warm",
            "1 once the intake worker processes examine; 0 while the daemon examines on its own thread",
            registry=r,
        )
        self.delivery_attempts = Counter(
            "switchd_delivery_attempts",
            "Delivery attempts by connector and outcome",
            ["connector", "outcome"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "switchd_outbox_depth", "Outbox rows by connector and state", ["connector", "state"], registry=r
        )
        self.breaker_open = Gauge(
            "switchd_connector_breaker_open",
            "1 while the connector's circuit breaker is open",
            ["connector"],
            registry=r,
        )
        self.status_reports = Counter(
            "switchd_bank_status_reports", "Status reports from banks by outcome", ["outcome"], registry=r
        )

    def message_done(self, channel: str, message_type: str, outcome: str, seconds: float) -> None:
        """Count one inbound message and observe its intake latency (the pipeline calls this once per message)."""
        # labels() builds and looks up a key under a lock on every call (~3 us each here); the children are kept
        # per label values instead. Bounded: channels x message types x outcomes is a small, fixed set.
        key = (channel, message_type, outcome)
        counter = self._message_children.get(key)
        if counter is None:
            counter = self._message_children[key] = self.messages.labels(channel, message_type, outcome)
        counter.inc()
        histogram = self._intake_children.get(channel)
        if histogram is None:
            histogram = self._intake_children[channel] = self.intake_seconds.labels(channel)
        histogram.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
