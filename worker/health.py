"""What the worker knows about its own readiness, for `/readyz`, the logs and metrics."""

from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass
class Health:
    """Components currently failing (e.g. "redis", "kafka") and why, and the assignment."""

    failing: dict[str, str] = field(default_factory=dict)
    assigned: set[TopicPartition] = field(default_factory=set)
    started: bool = False

    def failure(self, component: str, reason: str) -> None:
        """`component` is failing; the worker keeps retrying and reports not-ready."""
        self.failing[component] = reason

    def recovered(self, component: str) -> None:
        """`component` works again."""
        self.failing.pop(component, None)

    def problems(self) -> list[str]:
        """Why the worker is not ready (empty when it is)."""
        problems = [f"{name}: {reason}" for name, reason in sorted(self.failing.items())]
        if not self.started:
            problems.append("not started")
        elif not self.assigned:
            problems.append("no partitions assigned")
        return problems

    @property
    def ready(self) -> bool:
        """Started, partitions assigned, nothing failing."""
        return not self.problems()
