"""Connection settings: one security configuration for every client, nothing leaked."""

import pytest

from worker.connections import kafka_options, redacted
from worker.settings import Settings


def test_connection_strings_are_redacted() -> None:
    assert redacted("rediss://worker:s3cret@redis:6380/0") == "rediss://worker:***@redis:6380/0"
    assert redacted("redis://:s3cret@127.0.0.1/0") == "redis://:***@127.0.0.1/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_every_kafka_client_gets_the_configured_sasl() -> None:
    settings = Settings(
        kafka_bootstrap_servers="k:9093",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="worker",
        kafka_sasl_password="pw",
    )
    options = kafka_options(settings)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "PLAIN"
    assert options["sasl_plain_username"] == "worker"
    assert options["sasl_plain_password"] == "pw"
    assert "pw" not in repr(settings)


def test_sasl_without_credentials_is_a_configuration_error() -> None:
    settings = Settings(kafka_security_protocol="SASL_SSL")
    with pytest.raises(ValueError, match="CW_KAFKA_SASL_USERNAME"):
        kafka_options(settings)
