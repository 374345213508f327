"""What the worker knows about its own readiness, for `/readyz` and the logs."""

from dataclasses import dataclass, field


@dataclass
class Health:
    """Components currently failing (e.g. "redis", "kafka") and why."""

    failing: dict[str, str] = field(default_factory=dict)
    started: bool = False

    def failure(self, component: str, reason: str) -> None:
        """`component` is failing; the worker keeps retrying and reports not-ready."""
        self.failing[component] = reason

    def recovered(self, component: str) -> None:
        """`component` works again."""
        self.failing.pop(component, None)

    @property
    def ready(self) -> bool:
        """Started and nothing failing."""
        return self.started and not self.failing
