"""Configuration from the environment (pydantic-settings); every setting has a safe default.

Variables are prefixed `CW_` (nested with `__`, e.g. `CW_TOPICS__ORDER_EVENTS`). The two
connection settings also accept the conventional `KAFKA_BOOTSTRAP_SERVERS` and `REDIS_URL`,
which is what the local stack script exports.
"""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.scalars import MAX_SAFE_INTEGER
from worker.domain.fold import FoldLimits


class Topics(BaseModel):
    """Topic names; the defaults are the public contract (DESIGN.md §3)."""

    customer_commands: str = "customer.commands"
    order_events: str = "order.events"
    redemption_events: str = "redemption.events"
    loyalty_events: str = "loyalty.events"
    customer_updated: str = "customer.updated"
    referrals: str = Field(
        default="customer-worker.referrals",
        description=(
            "Internal: referrals forwarded to the worker that owns the referrer (keyed by "
            "its id), so that every customer is written by one worker only, and identity "
            "notices (who holds a source_id may have changed)."
        ),
    )
    dlq_suffix: str = ".dlq"

    @property
    def inputs(self) -> dict[str, str]:
        """Consumed topic name -> the contract topic whose event types it carries."""
        return {
            self.customer_commands: "customer.commands",
            self.order_events: "order.events",
            self.redemption_events: "redemption.events",
            self.loyalty_events: "loyalty.events",
            self.referrals: "loyalty.events",
        }

    def dlq(self, topic: str) -> str:
        """Dead-letter topic of an input topic."""
        return topic + self.dlq_suffix


class Limits(BaseModel):
    """Bounds on what one message or one customer can make the worker do or store.

    Each rejected message goes to the dead-letter topic with the error class named here.
    """

    max_message_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=900 * 1024,  # its dead letter must still fit Kafka's default 1 MB message limit
        description="MessageTooLarge: bytes of a record's value.",
    )
    max_text_length: int = Field(
        default=1024, ge=1, le=1024, description="LimitExceeded: characters of a text field."
    )
    max_list_items: int = Field(
        default=64, ge=1, le=256, description="LimitExceeded: items of `tags` or `addresses`."
    )
    max_metadata_keys: int = Field(
        default=64, ge=1, description="LimitExceeded: `metadata` keys in one event."
    )
    max_metadata_value_bytes: int = Field(
        default=4096, ge=16, description="LimitExceeded: JSON bytes of one metadata value."
    )
    max_past_days: int = Field(
        default=3650, ge=1, description="TimestampOutOfRange: how old an event time may be."
    )
    max_future_seconds: int = Field(
        default=3600, ge=0, description="TimestampOutOfRange: clock skew allowed ahead of now."
    )
    max_amount: int = Field(
        default=MAX_SAFE_INTEGER,
        ge=1,
        le=MAX_SAFE_INTEGER,
        description=(
            "LimitExceeded: largest money amount of one event (order and redemption "
            "amounts, gift card balances, house account limit and balance), in minor units."
        ),
    )
    max_points: int = Field(
        default=MAX_SAFE_INTEGER,
        ge=1,
        le=MAX_SAFE_INTEGER,
        description=(
            "LimitExceeded: largest number of points of one event (points moved and "
            "redeemed, loyalty card balances)."
        ),
    )
    max_record_fields: int = Field(
        default=10_000,
        ge=100,
        le=1_000_000,
        description=(
            "RecordLimitExceeded: fields one customer's stored record may hold (metadata "
            "keys, campaigns, referrals, one per order, redemption outcome and card, and "
            "one stamp per register)."
        ),
    )
    max_record_bytes: int = Field(
        default=256 * 1024,
        ge=16 * 1024,
        le=320 * 1024,  # its customer.updated must fit Kafka's default 1 MB message limit
        description=(
            "RecordLimitExceeded: bytes of the visible fields of one customer's record "
            "(names and values), which bound its customer.updated message."
        ),
    )


class Settings(BaseSettings):
    """Everything the worker reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="CW_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("CW_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Comma-separated host:port list of Kafka brokers.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("CW_REDIS_URL", "REDIS_URL"),
        description="redis:// or rediss:// URL of the store.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How to reach Kafka: TLS and/or SASL authentication."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism (SASL_* protocols only)."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user.")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (from a secret; never logged)."
    )
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="zstd",
        description=(
            "Compression of the records the worker produces (customer.updated, dead "
            "letters, forwarded referrals)."
        ),
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="CA bundle (PEM) to verify the brokers (SSL and SASL_SSL)."
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS."
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="Client private key (PEM) for mutual TLS."
    )
    redis_username: str | None = Field(
        default=None, description="Redis ACL user (else the one in CW_REDIS_URL, if any)."
    )
    redis_password: SecretStr | None = Field(
        default=None, description="Redis password (from a secret; never logged)."
    )
    redis_ssl_ca_certs: Path | None = Field(
        default=None, description="CA bundle (PEM) to verify Redis over TLS (rediss:// URLs)."
    )
    redis_cluster: bool = Field(
        default=False,
        description=(
            "Talk to a Redis Cluster: CW_REDIS_URL names any one node. Every atomic step "
            "touches one customer's keys, which share the hash tag {customer_id}: one slot."
        ),
    )
    group_id: str = Field(default="customer-worker", description="Kafka consumer group.")
    topics: Topics = Field(default_factory=Topics)
    limits: Limits = Field(default_factory=Limits)
    key_prefix: str = Field(
        default="cw",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Prefix of every Redis key (no braces: the hash tag is the customer id).",
    )
    batch_max_records: int = Field(
        default=2000, ge=1, description="Most records handled in one batch."
    )
    batch_timeout_ms: int = Field(
        default=100, ge=1, description="Longest wait for a batch to fill."
    )
    publish_every_change: bool = Field(
        default=False,
        description=(
            "Publish one customer.updated per applied event instead of one per customer "
            "per batch (the latest state)."
        ),
    )
    record_cache_size: int = Field(
        default=50_000,
        ge=0,
        description=(
            "Customers whose rendered record the worker keeps in memory between batches "
            "(least recently changed evicted): a change to a cached customer reads and "
            "renders only what it touches. Implicit customers (named by source_id) count "
            "too; CW_RECORD_CACHE_MIB bounds the memory."
        ),
    )
    record_cache_mib: int = Field(
        default=192,
        ge=0,
        description=(
            "Estimated memory (MiB) the record cache may hold: records grow with their "
            "customers' history, so the cache evicts by size as well as by count. The "
            "worker's RSS is about 300 MiB plus this (measured with the default 192: "
            "485 MiB at 1M events)."
        ),
    )
    dedup_max_markers: int = Field(
        default=256,
        ge=1,
        description=(
            "Dedup markers kept per customer (the most recent; up to a quarter more, evicted "
            "in chunks). A redelivery is recognised while fewer than this many later events "
            "of the same customer were applied."
        ),
    )
    erase_replay_window_seconds: int = Field(
        default=86_400,
        ge=0,
        description=(
            "Events are kept (at most dedup_max_markers per customer) while dated within "
            "this window of the customer's latest event, so that an erase arriving after "
            "events dated later than itself folds them again instead of losing them."
        ),
    )
    retry_initial_seconds: float = Field(
        default=0.2, gt=0, description="First backoff after a transient failure."
    )
    retry_max_seconds: float = Field(
        default=10.0, gt=0, description="Longest backoff between retries."
    )
    redis_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Socket timeout of Redis calls: a hung Redis becomes a retried failure.",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="json (one object per line), console, or auto: console on a terminal.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Level of the worker's and its libraries' logs."
    )
    graceful_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long shutdown waits for the batch in flight."
    )
    session_timeout_ms: int = Field(
        default=10_000,
        ge=6_000,  # the broker's default group.min.session.timeout.ms
        description=(
            "Kafka group session timeout: how long a crashed worker's partitions stay "
            "unconsumed before the group hands them to the others."
        ),
    )


def fold_limits(settings: Settings) -> FoldLimits:
    """What the fold needs of the settings."""
    return FoldLimits(
        each_change=settings.publish_every_change,
        kept_markers=settings.dedup_max_markers,
        replay_window=settings.erase_replay_window_seconds * 1_000_000,
        max_fields=settings.limits.max_record_fields,
        max_bytes=settings.limits.max_record_bytes,
    )
