"""The local stack script creates exactly the topics the worker's code defines."""

import re
from pathlib import Path

from worker.settings import Topics
from worker.topics import contract_topics

SCRIPT = Path(__file__).parent.parent / "deploy" / "local-stack.sh"


def test_stack_topics_are_the_contract_topics() -> None:
    block = re.search(r"^TOPICS=\((.*?)^\)", SCRIPT.read_text(), re.MULTILINE | re.DOTALL)
    assert block is not None
    listed = {}
    for line in block.group(1).splitlines():
        fields = line.strip().strip('"').split()
        if fields:
            listed[fields[0]] = fields[2]
    specs = {spec.name: spec for spec in contract_topics(Topics(), partitions=6)}
    assert set(listed) == set(specs)
    for name, spec in specs.items():
        config = ",".join(f"{k}={v}" for k, v in spec.configs.items()) or "-"
        assert listed[name] == config, name
