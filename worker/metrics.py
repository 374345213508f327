"""Prometheus metrics of the worker (served at `/metrics`).

Names are part of the operational contract: the Grafana dashboard in `deploy/grafana/` and
its test use exactly these.
"""

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

#: Outcome labels of `customer_worker_events_total`, by the fold's outcome letter.
OUTCOMES = {"A": "applied", "U": "ignored", "I": "ignored", "D": "duplicate"}


@dataclass
class Metrics:
    """All metrics, registered in one registry (not the global one: tests build many)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            "customer_worker_events",
            "Input events by topic, type and outcome (applied, ignored, duplicate, dlq).",
            ["topic", "type", "outcome"],
            registry=r,
        )
        self.dlq = Counter(
            "customer_worker_dlq",
            "Records sent to a dead-letter topic, by input topic and error class.",
            ["topic", "error_class"],
            registry=r,
        )
        self.batch_size = Histogram(
            "customer_worker_batch_size", "Records per batch.", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "customer_worker_batch_seconds",
            "Time to handle a batch, from decoding to acknowledged output.",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.redis_seconds = Histogram(
            "customer_worker_redis_seconds",
            "The batch's Redis round trip (all customers' atomic steps, pipelined).",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.publish_seconds = Histogram(
            "customer_worker_publish_seconds",
            "Producing a batch's output until every record is acknowledged (acks=all).",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "customer_worker_consumer_lag",
            "Records behind the partition's high watermark, as of the last batch.",
            ["topic", "partition"],
            registry=r,
        )
        self.retries = Counter(
            "customer_worker_retries",
            "Retries after a transient failure, by component (redis, kafka, pipeline).",
            ["component"],
            registry=r,
        )
        self.cache_bytes = Gauge(
            "customer_worker_record_cache_bytes",
            "Estimated memory the record cache holds (bounded by CW_RECORD_CACHE_MIB).",
            registry=r,
        )
        self.cache_lookups = Counter(
            "customer_worker_record_cache_lookups",
            "Customers of a batch looked up in the record cache, by outcome (hit, miss: read "
            "from Redis or new); a low hit ratio asks for a larger CW_RECORD_CACHE_MIB.",
            ["outcome"],
            registry=r,
        )
        self.identity_conflicts = Counter(
            "customer_worker_identity_conflicts",
            "Claims on a source_id another customer holds (IdentityConflict; see "
            "`customer-worker identity show`).",
            registry=r,
        )
        self.ready = Gauge(
            "customer_worker_ready", "1 when /readyz reports ready, else 0.", registry=r
        )
