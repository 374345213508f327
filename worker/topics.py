"""Creates the contract's topics: inputs, their dead-letter topics and compacted output."""

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from worker.settings import Topics

_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create and how."""

    name: str
    partitions: int
    configs: dict[str, str]


def contract_topics(topics: Topics, partitions: int) -> list[TopicSpec]:
    """Every topic the worker reads or writes.

    `customer.updated` is compacted: a new subscriber reads the latest version of every
    customer, and an erased customer's tombstone eventually removes it from the log.
    """
    specs = []
    for name in topics.inputs:
        specs.append(TopicSpec(name, partitions, {}))
        specs.append(TopicSpec(topics.dlq(name), partitions, {}))
    specs.append(TopicSpec(topics.customer_updated, partitions, {"cleanup.policy": "compact"}))
    return specs


async def ensure_topics(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], replication: int
) -> list[str]:
    """Create the missing topics; returns the names created (existing ones are left as is)."""
    response = await admin.create_topics(
        [NewTopic(s.name, s.partitions, replication, topic_configs=s.configs) for s in specs]
    )
    created = []
    for name, code, *_ in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != _TOPIC_ALREADY_EXISTS:
            raise for_code(code)(f"cannot create topic {name}")
    return created
