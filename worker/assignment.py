"""Tracks which partitions the consumer owns (readiness, lag gauges)."""

from aiokafka import ConsumerRebalanceListener, TopicPartition

from worker.health import Health
from worker.metrics import Metrics


class AssignmentListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps `Health.assigned` equal to the consumer's assignment."""

    def __init__(self, health: Health, metrics: Metrics) -> None:
        self._health = health
        self._metrics = metrics

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for partition in revoked:
            self._health.assigned.discard(partition)
            try:
                self._metrics.lag.remove(partition.topic, str(partition.partition))
            except KeyError:
                continue

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._health.assigned.update(assigned)
