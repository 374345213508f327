"""The README documents every setting and every command that exists."""

from pathlib import Path

from typer.main import get_command

from worker.cli import cli
from worker.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    for name, field in Settings.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and hasattr(nested, "model_fields"):
            for inner in nested.model_fields:
                assert f"`CW_{name.upper()}__{inner.upper()}`" in README, (name, inner)
        else:
            assert f"`CW_{name.upper()}`" in README, name


def test_every_command_is_documented() -> None:
    root = get_command(cli)
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", {})
        for sub in subcommands or [""]:
            assert f"customer-worker {name} {sub}".strip() in README, (name, sub)


def test_the_recommended_redis_acl_is_the_tested_one() -> None:
    from tests.support.secure_stack import WORKER_REDIS_ACL

    assert f"user customer-worker on >PASSWORD {WORKER_REDIS_ACL}" in README
