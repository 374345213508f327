"""Static checks of the deployment files (no Docker, no cluster, no network).

- docker-compose.yml: validated against the official Compose Specification JSON Schema (the copy
  vendored, with its sha256, by the `check-jsonschema` dev dependency), then checked for what
  the worker needs: pinned images, healthchecks, start order, durable Redis, settings names.
- deploy/Dockerfile and .dockerignore: parsed here; stages, user, pins, uv, entrypoint, copies.
- deploy/k8s: every manifest validated against the Kubernetes OpenAPI JSON Schemas bundled by the
  `kubernetes-validate` dev dependency (strict: unknown fields fail), then semantic checks.
- deploy/grafana, deploy/prometheus: the dashboard only uses metrics the worker exports.

Environment variable names are checked against worker.settings.Settings itself, so a renamed
setting fails here. The schema tests run with sockets disabled, to prove they work offline.

Run alone with `uv run pytest tests/test_deploy_config.py --noconftest` (needs no Kafka/Redis).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.resources
import json
import os
import re
import shlex
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.specifiers import SpecifierSet
from pydantic import AliasChoices, BaseModel

from worker.metrics import Metrics
from worker.settings import Settings, Topics
from worker.tracing import DOCUMENTED_ENV, configured_exporter

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_DIR = ROOT / "deploy" / "k8s"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "customer-worker.json"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

APP_NAME = "customer-worker"
HTTP_PORT = 8080
SECRET_NAME = "customer-worker-secrets"

# Security settings being added to Settings (Kafka SASL/TLS, Redis TLS). Allowed by name even
# before they exist there; drop a name from here once Settings has it (it is then derived).
UPCOMING_SECURITY_ENV = frozenset(
    {
        "CW_KAFKA_SECURITY_PROTOCOL",
        "CW_KAFKA_SASL_MECHANISM",
        "CW_KAFKA_SASL_USERNAME",
        "CW_KAFKA_SASL_PASSWORD",
        "CW_KAFKA_SSL_CAFILE",
        "CW_REDIS_SSL_CA_CERTS",
    }
)
# Never a literal in compose or k8s: in k8s only through secretKeyRef to SECRET_NAME.
# name -> (Secret key, optional?)
SECRET_ENV = {
    "CW_REDIS_URL": ("redis-url", False),
    "CW_KAFKA_SASL_USERNAME": ("kafka-sasl-username", True),
    "CW_KAFKA_SASL_PASSWORD": ("kafka-sasl-password", True),
}
CONNECTION_ALIASES = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")

# Metrics the worker exports, by Prometheus type: read from its registry, so that a new
# metric without a panel fails `test_dashboard_only_uses_exported_metrics`.
_FAMILIES = [(family.name, family.type) for family in Metrics().registry.collect()]
COUNTERS = frozenset(name + "_total" for name, kind in _FAMILIES if kind == "counter")
GAUGES = frozenset(name for name, kind in _FAMILIES if kind == "gauge")
HISTOGRAMS = frozenset(name for name, kind in _FAMILIES if kind == "histogram")
METRIC_SERIES = (
    COUNTERS | GAUGES | {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)

# A user:password@ part in a URL: credentials written out literally.
URL_CREDENTIALS = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
PINNED_TAG = re.compile(r"^[a-z0-9][a-z0-9._/-]*:(?!latest$)[A-Za-z0-9._-]*\d[A-Za-z0-9._-]*$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def settings_env_names() -> frozenset[str]:
    """Every environment variable name Settings reads, derived from its fields."""
    config = Settings.model_config
    prefix = str(config.get("env_prefix") or "")
    delimiter = str(config.get("env_nested_delimiter") or "__")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice.upper() for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(
                f"{prefix}{name}{delimiter}{sub}".upper() for sub in annotation.model_fields
            )
    return frozenset(names)


KNOWN_ENV = settings_env_names() | UPCOMING_SECURITY_ENV | set(DOCUMENTED_ENV)


def env_name_problems(names: Any) -> list[str]:
    return sorted(name for name in names if name not in KNOWN_ENV)


def topic_env() -> dict[str, str]:
    """CW_TOPICS__* -> the contract's default topic name."""
    return {f"CW_TOPICS__{name.upper()}": value for name, value in Topics().model_dump().items()}


def settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, Any]) -> Settings:
    """Settings exactly as the container would load them from `env` (nothing else leaks in)."""
    for name in list(os.environ):
        if name.startswith("CW_") or name in CONNECTION_ALIASES:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return Settings()


def default_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    return settings_from_env(monkeypatch, {})


def duration_seconds(value: str) -> float:
    """Compose durations: '1m30s', '40s', '500ms'."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts, f"not a duration: {value!r}"
    assert "".join(number + unit for number, unit in parts) == value, f"bad duration {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_no_network_fixture_blocks_connections(no_network: None) -> None:
    with pytest.raises(AssertionError, match="network access"):
        socket.create_connection(("127.0.0.1", 9))


def test_settings_env_names_are_derived_from_settings() -> None:
    assert {
        "CW_KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_BOOTSTRAP_SERVERS",
        "CW_REDIS_URL",
        "CW_GROUP_ID",
        "CW_GRACEFUL_TIMEOUT_SECONDS",
        "CW_TOPICS__ORDER_EVENTS",
        "CW_TOPICS__DLQ_SUFFIX",
    } <= settings_env_names()
    assert env_name_problems(["CW_NOT_A_SETTING", "CW_GROUP_ID"]) == ["CW_NOT_A_SETTING"]


# ------------------------------------------------------------------------------------------
# docker-compose.yml
# ------------------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema vendored by check-jsonschema, integrity-checked."""
    vendor = importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
    raw = (vendor / "compose-spec.json").read_bytes()
    expected = (vendor / "sha256" / "compose-spec.sha256").read_text(encoding="utf-8").split()[0]
    assert hashlib.sha256(raw).hexdigest() == expected
    schema = json.loads(raw)
    assert schema.get("title") == "Compose Specification"
    return schema  # type: ignore[no-any-return]


def compose_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return sorted(
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    )


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Short-syntax volumes `source:target[:mode]` -> {source: target}."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target, *_ = volume.split(":")
        mounts[source] = target
    return mounts


def service_env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


COMPOSE = load_compose()
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_compose_is_valid_against_the_compose_spec_schema(no_network: None) -> None:
    assert compose_errors(COMPOSE) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "worker", "helthcheck"), {"test": ["CMD", "true"]}),
        (("services", "worker", "depends_on", "kafka", "condition"), "service_happy"),
        (("services", "redis", "ports"), "6379"),
        (("version",), 3),
    ],
)
def test_compose_schema_rejects_broken_files(
    no_network: None, path: tuple[str, ...], value: Any
) -> None:
    broken = copy.deepcopy(COMPOSE)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert compose_errors(broken) != []


def test_compose_has_no_version_key_and_the_services() -> None:
    assert "version" not in COMPOSE
    assert {"kafka", "redis", "topic-init", "worker"} <= set(SERVICES)


def test_compose_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = service.get("image")
        if "build" in service:
            assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
            assert (ROOT / service["build"].get("context", ".")).resolve() == ROOT, name
            assert image, f"{name}: name the built image"
            assert not image.endswith(":latest"), name
            continue
        assert image, f"{name}: no image and no build"
        assert PINNED_TAG.match(image) or DIGEST.search(image), f"{name}: unpinned {image}"
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.")
    assert re.match(r"^redis:7\.\d+\.\d+-alpine$", SERVICES["redis"]["image"])


def test_topic_init_and_worker_use_the_same_image() -> None:
    for key in ("image", "build"):
        assert SERVICES["topic-init"][key] == SERVICES["worker"][key]


def test_compose_healthchecks() -> None:
    for name in ("kafka", "redis", "worker"):
        check = SERVICES[name].get("healthcheck")
        assert check, f"{name}: no healthcheck"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    kafka_test = " ".join(SERVICES["kafka"]["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-" in kafka_test
    assert "localhost:9092" in kafka_test
    assert "redis-cli ping" in " ".join(SERVICES["redis"]["healthcheck"]["test"])
    worker_test = " ".join(SERVICES["worker"]["healthcheck"]["test"])
    assert f"127.0.0.1:{HTTP_PORT}/readyz" in worker_test
    assert "curl" not in worker_test
    assert "wget" not in worker_test


def test_worker_start_order() -> None:
    assert SERVICES["worker"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "topic-init": {"condition": "service_completed_successfully"},
    }
    assert SERVICES["topic-init"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}


def test_topic_init_is_one_shot_topics_ensure() -> None:
    topic_init = SERVICES["topic-init"]
    assert topic_init["restart"] == "no"
    command = topic_init["command"]
    assert command[:2] == ["topics", "ensure"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options == {"--partitions": "6", "--replication": "1"}


def test_kafka_is_single_node_kraft() -> None:
    env = service_env(SERVICES["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node_id = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:9093"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # only topic-init creates topics
    for name, value in env.items():
        if name.endswith(("REPLICATION_FACTOR", "MIN_ISR")):
            assert value == "1", name
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "kafka:9092"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    protocol_map = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    protocols = dict(item.split(":") for item in protocol_map.split(","))
    assert set(listeners) == set(protocols)
    # KRaft needs a base64url UUID (16 bytes) as cluster id.
    cluster_id = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert env["KAFKA_LOG_DIRS"] in volume_mounts(SERVICES["kafka"]).values()


def test_named_volumes_are_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name in ("kafka", "redis"):
        assert set(volume_mounts(SERVICES[name])) & declared, f"{name}: no named volume"


def test_bind_mounts_exist() -> None:
    for name, service in SERVICES.items():
        for source in volume_mounts(service):
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} missing"


def test_redis_is_durable() -> None:
    redis = SERVICES["redis"]
    command = redis["command"]
    words = shlex.split(command) if isinstance(command, str) else list(command)
    assert words[0] == "redis-server"
    options = dict(zip(words[1::2], words[2::2], strict=False))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "always"
    data_dir = options.get("--dir", "/data")
    assert data_dir in volume_mounts(redis).values()


@pytest.mark.parametrize("name", ["worker", "topic-init"])
def test_compose_worker_env_names_are_settings(name: str) -> None:
    env = service_env(SERVICES[name])
    assert env_name_problems(env) == []
    assert not set(env) & UPCOMING_SECURITY_ENV, "security settings are not for compose"
    for variable, value in env.items():
        assert not URL_CREDENTIALS.search(value), f"{variable}: credentials in a URL"


@pytest.mark.parametrize("name", ["worker", "topic-init"])
def test_compose_worker_env_loads_into_settings(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    env = service_env(SERVICES[name])
    settings = settings_from_env(monkeypatch, env)
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.topics == Topics()
    for variable, topic in topic_env().items():
        assert env.get(variable, topic) == topic, variable


def test_compose_bootstrap_matches_kafka_internal_listener() -> None:
    env = service_env(SERVICES["kafka"])
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    worker_env = service_env(SERVICES["worker"])
    assert worker_env["CW_KAFKA_BOOTSTRAP_SERVERS"] in advertised.values()
    assert worker_env["CW_REDIS_URL"].startswith("redis://redis:6379/")


def test_worker_stop_grace_covers_the_graceful_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = SERVICES["worker"]
    settings = settings_from_env(monkeypatch, service_env(worker))
    grace = duration_seconds(worker["stop_grace_period"])
    assert grace >= settings.graceful_timeout_seconds + 5
    assert grace >= default_settings(monkeypatch).graceful_timeout_seconds + 5
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_worker_publishes_http_port() -> None:
    ports = [str(port) for port in SERVICES["worker"]["ports"]]
    assert any(port.endswith(f":{HTTP_PORT}") for port in ports)
    assert SERVICES["worker"]["command"][-2:] == ["--port", str(HTTP_PORT)]


def test_observability_services_only_under_a_profile() -> None:
    assert "prometheus" in SERVICES
    for name in ("prometheus", "grafana", "jaeger"):
        assert SERVICES[name].get("profiles") == ["observability"], name
    for name in ("kafka", "redis", "topic-init", "worker"):
        assert "profiles" not in SERVICES[name], name


def test_no_secret_literals_in_compose() -> None:
    for name, service in SERVICES.items():
        for variable, value in service_env(service).items():
            assert not URL_CREDENTIALS.search(value), f"{name}.{variable}"
            if re.search(r"PASSWORD|SECRET|TOKEN", variable):
                pytest.fail(f"{name}: {variable} set literally in compose")


# ------------------------------------------------------------------------------------------
# deploy/prometheus, deploy/grafana
# ------------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_worker() -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs[APP_NAME]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    assert targets == [f"worker:{HTTP_PORT}"]
    mounts = volume_mounts(SERVICES["prometheus"])
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"


PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"offset", "bool", "inf", "nan", "atan2"}
)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (enough PromQL for a dashboard)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", text):
        if match.group(1).lower() not in PROMQL_KEYWORDS:
            names.add(match.group(1))
    return names


def test_promql_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, topic) (rate(a_bucket{x="y{z}"}[$__rate_interval])))'
        " / on (instance) group_left () up + count(b == 0) or vector(1e3)"
    )
    assert promql_metric_names(expr) == {"a_bucket", "up", "b"}


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == APP_NAME
    assert 36 <= dashboard["schemaVersion"] <= 41
    panels = list(dashboard_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert "datasource" in variables
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_dashboard_only_uses_exported_metrics() -> None:
    dashboard = load_dashboard()
    used: set[str] = set()
    for expr in dashboard_exprs(dashboard):
        names = promql_metric_names(expr)
        assert names <= METRIC_SERIES, f"unknown metric in {expr!r}: {names - METRIC_SERIES}"
        used |= names
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        for metric in re.findall(r"label_values\(\s*([A-Za-z_:][\w:]*)", text):
            assert metric in METRIC_SERIES, metric
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert families >= COUNTERS | GAUGES | HISTOGRAMS, "a metric has no panel"


def test_dashboard_uses_counters_as_rates_and_histograms_by_bucket() -> None:
    for expr in dashboard_exprs(load_dashboard()):
        for counter in COUNTERS:
            uses = len(re.findall(rf"\b{counter}\b", expr))
            rated = len(re.findall(rf"\b(?:rate|irate|increase)\(\s*{counter}\b", expr))
            assert uses == rated, f"{counter} not under rate() in {expr!r}"
        if "histogram_quantile" in expr:
            assert re.search(r"_bucket\b", expr)
            assert re.search(r"\bby \((le|[^)]*\ble\b)", expr)


def test_dashboard_panels_cover_the_brief() -> None:
    exprs = "\n".join(dashboard_exprs(load_dashboard()))
    assert "sum by (outcome)" in exprs
    assert "error_class" in exprs
    assert re.search(r"by \(topic, partition\) \(customer_worker_consumer_lag", exprs)
    for histogram in HISTOGRAMS:
        assert f"histogram_quantile(0.99, sum by (le) (rate({histogram}_bucket" in exprs


def test_grafana_provisioning_matches_compose() -> None:
    provisioning = GRAFANA_DIR / "provisioning"
    datasources = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "customer-worker.yml").read_text(encoding="utf-8")
    )
    (provider,) = providers["providers"]
    mounts = volume_mounts(SERVICES["grafana"])
    assert mounts["./deploy/grafana/customer-worker.json"].startswith(
        provider["options"]["path"] + "/"
    )
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


# ------------------------------------------------------------------------------------------
# deploy/Dockerfile, .dockerignore
# ------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; joins continuation lines, drops comments."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, arguments = pending.partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, "dangling line continuation"
    return instructions


def expand_args(value: str, args: dict[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value
    )


def dockerfile_stages() -> list[dict[str, Any]]:
    """Stages with their base image (ARG defaults substituted) and instructions."""
    global_args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for keyword, arguments in dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(
                {
                    "image": expand_args(words[0], global_args),
                    "name": name,
                    "args": dict(global_args),
                    "instructions": [],
                }
            )
        elif keyword == "ARG":
            name, _, default = arguments.partition("=")
            (stages[-1]["args"] if stages else global_args)[name] = default.strip('"')
        else:
            assert stages, f"{keyword} before FROM"
            stage = stages[-1]
            stage["instructions"].append((keyword, expand_args(arguments, stage["args"])))
    return stages


def instructions_of(stage: dict[str, Any], keyword: str) -> list[str]:
    return [arguments for key, arguments in stage["instructions"] if key == keyword]


STAGES = dockerfile_stages()
FINAL = STAGES[-1]


def test_dockerfile_is_multi_stage_on_one_pinned_base() -> None:
    assert len(STAGES) >= 2
    images = {stage["image"] for stage in STAGES}
    assert len(images) == 1, "builder and runtime must share the base (the venv's python)"
    (image,) = images
    assert PINNED_TAG.match(image) or DIGEST.search(image), image
    match = re.match(r"^python:(\d+\.\d+\.\d+)-slim(-\w+)?$", image)
    assert match, f"expected a pinned python:X.Y.Z-slim image, got {image}"
    assert match.group(1) in SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert match.group(1).startswith("3.11.")
    assert all(stage["name"] for stage in STAGES), "name every stage"


def test_dockerfile_installs_with_uv_frozen_in_the_builder() -> None:
    builder = STAGES[0]
    runs = instructions_of(builder, "RUN")
    ensure_uv = (ROOT / "deploy" / "ensure-uv.sh").read_text(encoding="utf-8")
    pinned_uv = re.search(r"CW_UV_VERSION:-([\d.]+)", ensure_uv)
    assert pinned_uv
    assert any(f"uv=={pinned_uv.group(1)}" in run and "pip install" in run for run in runs)
    syncs = [run for run in runs if "uv sync" in run]
    assert len(syncs) == 2
    for run in syncs:
        assert "--frozen" in run
        assert "--no-dev" in run
        assert "--no-editable" in run
    assert "--no-install-project" in syncs[0]
    assert "--no-install-project" not in syncs[1]
    # Layer caching: dependencies are synced before the project's source is copied.
    keys = [f"{key} {arguments}" for key, arguments in builder["instructions"]]
    first_sync = keys.index(f"RUN {syncs[0]}")
    lock_copy = next(i for i, k in enumerate(keys) if k.startswith("COPY") and "uv.lock" in k)
    source_copies = [i for i, k in enumerate(keys) if k.startswith("COPY") and "worker" in k]
    assert lock_copy < first_sync < min(source_copies) < keys.index(f"RUN {syncs[1]}")


def test_dockerfile_runtime_stage() -> None:
    users = instructions_of(FINAL, "USER")
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "numeric uid (k8s runAsNonRoot can only check a numeric one)"
    assert int(uid) != 0, "non-root uid"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert not any("uv" in run.split() for run in instructions_of(FINAL, "RUN"))
    copies = instructions_of(FINAL, "COPY")
    assert copies
    assert all(c.startswith(f"--from={STAGES[0]['name']} ") for c in copies)
    assert any("/app/.venv" in copy_ for copy_ in copies)
    env = " ".join(instructions_of(FINAL, "ENV"))
    assert re.search(r'PATH="?/app/\.venv/bin:\$PATH', env)
    assert "PYTHONUNBUFFERED=1" in env
    assert instructions_of(FINAL, "EXPOSE") == [str(HTTP_PORT)]
    assert instructions_of(FINAL, "STOPSIGNAL") == ["SIGTERM"]


def test_dockerfile_entrypoint_and_cmd() -> None:
    (entrypoint,) = instructions_of(FINAL, "ENTRYPOINT")
    assert json.loads(entrypoint) == [APP_NAME]
    assert APP_NAME in PYPROJECT["project"]["scripts"]
    (cmd,) = instructions_of(FINAL, "CMD")
    assert json.loads(cmd) == ["run", "--host", "0.0.0.0", "--port", str(HTTP_PORT)]


def test_dockerfile_healthcheck_uses_python_against_healthz() -> None:
    (healthcheck,) = instructions_of(FINAL, "HEALTHCHECK")
    _, _, command = healthcheck.partition("CMD ")
    words = json.loads(command)
    assert words[0] == "python"
    assert f"127.0.0.1:{HTTP_PORT}/healthz" in words[-1]


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) in file order, after moby's patternmatcher."""
    patterns = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((exclude, re.compile(f"^{regex}$")))
    return patterns


def in_build_context(path: str) -> bool:
    """Whether `path` (relative to the repo root) is sent to the builder."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for exclude, regex in dockerignore_patterns():
        if any(regex.match(candidate) for candidate in candidates):
            included = not exclude
    return included


def test_dockerignore_matcher() -> None:
    assert not in_build_context(".venv/bin/python")
    assert in_build_context("worker/app.py")
    assert not in_build_context("worker/__pycache__/app.cpython-311.pyc")


def test_dockerignore_keeps_what_the_image_needs() -> None:
    for path in (
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "worker/__init__.py",
        "worker/cli.py",
        "worker/store/commit.lua",
        "contracts/__init__.py",
    ):
        assert (ROOT / path).exists(), path
        assert in_build_context(path), f"{path} is excluded from the build context"
    for path in (".venv/pyvenv.cfg", ".git/HEAD", ".stack/env", "tests/conftest.py", ".env"):
        assert not in_build_context(path), f"{path} is sent to the builder"
    for cache in (".mypy_cache/x", ".pytest_cache/x", ".ruff_cache/x", ".hypothesis/x"):
        assert not in_build_context(cache), cache


def test_dockerfile_copies_existing_paths() -> None:
    for stage in STAGES:
        for arguments in instructions_of(stage, "COPY"):
            words = [word for word in arguments.split() if not word.startswith("--")]
            if arguments.startswith("--from="):
                source_stage = arguments.split()[0].removeprefix("--from=")
                assert source_stage in {s["name"] for s in STAGES}, source_stage
                continue
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: missing"
                assert in_build_context(source), f"COPY {source}: excluded by .dockerignore"


# ------------------------------------------------------------------------------------------
# deploy/k8s
# ------------------------------------------------------------------------------------------


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in sorted(K8S_DIR.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if document
    ]


DOCUMENTS = k8s_documents()
KUBERNETES_VERSIONS = sorted(
    {"1.30", ".".join(kubernetes_validate.latest_version().split(".")[:2])}
)


def k8s_object(kind: str, file: str | None = None) -> dict[str, Any]:
    (found,) = [
        document
        for name, document in DOCUMENTS
        if document["kind"] == kind and (file is None or name == file)
    ]
    return found


DEPLOYMENT = k8s_object("Deployment")
JOB = k8s_object("Job")
CONFIGMAP = k8s_object("ConfigMap")
SERVICE = k8s_object("Service")
PDB = k8s_object("PodDisruptionBudget")
KUSTOMIZATION = k8s_object("Kustomization")
EXAMPLE_SECRET = k8s_object("Secret", "secret.example.yaml")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec(workload)["containers"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("file", "document"),
    [(file, document) for file, document in DOCUMENTS if document["kind"] != "Kustomization"],
    ids=lambda value: value if isinstance(value, str) else value["kind"],
)
def test_k8s_manifest_is_valid_against_the_kubernetes_schema(
    no_network: None, version: str, file: str, document: dict[str, Any]
) -> None:
    try:
        validated = kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(map(str, error.path))
        pytest.fail(f"{file}: {document['kind']}: {path}: {error.message}")
    assert validated == version


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["spec"].__setitem__("replicas", "three"),
        lambda d: containers(d)[0].__setitem__("livenesProbe", {}),
        lambda d: containers(d)[0]["ports"][0].__setitem__("containerPort", "http"),
        lambda d: pod_spec(d).__setitem__("terminationGracePeriod", 45),
    ],
    ids=["type", "unknown-container-field", "port-type", "unknown-pod-field"],
)
def test_k8s_schema_rejects_broken_manifests(no_network: None, mutate: Any) -> None:
    broken = copy.deepcopy(DEPLOYMENT)
    mutate(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_k8s_labels_are_consistent() -> None:
    for file, document in DOCUMENTS:
        if document["kind"] == "Kustomization":
            continue
        labels = document["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == APP_NAME, file
    for workload in (DEPLOYMENT, JOB):
        template_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert template_labels["app.kubernetes.io/name"] == APP_NAME


def test_selectors_match_the_deployment() -> None:
    selector = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    pod_labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert SERVICE["spec"]["selector"] == selector
    assert PDB["spec"]["selector"]["matchLabels"] == selector
    # The topics Job's pods must not be picked up by the Service or the PDB.
    job_labels = JOB["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= job_labels.items()


def test_pdb_and_replicas() -> None:
    assert PDB["apiVersion"] == "policy/v1"
    assert PDB["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in PDB["spec"]
    assert DEPLOYMENT["spec"]["replicas"] == 3


def test_service_exposes_the_named_http_port() -> None:
    assert SERVICE["spec"].get("type", "ClusterIP") == "ClusterIP"
    (port,) = SERVICE["spec"]["ports"]
    assert port["port"] == HTTP_PORT
    assert port["targetPort"] == "http"


def test_deployment_container() -> None:
    (container,) = containers(DEPLOYMENT)
    assert container["args"] == ["run", "--host", "0.0.0.0", "--port", str(HTTP_PORT)]
    assert "command" not in container, "the image's ENTRYPOINT is customer-worker"
    assert {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"} in container["ports"]
    probes = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in probes.items():
        http_get = container[probe]["httpGet"]
        assert http_get == {"path": path, "port": "http"}, probe
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(HTTP_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("workload", [DEPLOYMENT, JOB], ids=["deployment", "job"])
def test_workload_image_and_resources(workload: dict[str, Any]) -> None:
    for container in containers(workload):
        image = container["image"]
        assert PINNED_TAG.match(image) or DIGEST.search(image), image
        assert image.rsplit(":", 1)[1] == PYPROJECT["project"]["version"]
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), f"{kind} missing"


def _mebibytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * (1024 if unit == "Gi" else 1)


def test_the_memory_request_holds_the_record_cache() -> None:
    """RSS is about 300 MiB plus the record cache (README, `--memory` bench): a request below
    that gets the pod evicted under pressure, a limit without headroom OOM-kills it."""
    cache = int(CONFIGMAP["data"]["CW_RECORD_CACHE_MIB"])
    resources = containers(DEPLOYMENT)[0]["resources"]
    assert _mebibytes(resources["requests"]["memory"]) >= 300 + cache
    assert _mebibytes(resources["limits"]["memory"]) >= 300 + cache + 128


@pytest.mark.parametrize("workload", [DEPLOYMENT, JOB], ids=["deployment", "job"])
def test_workload_security_context(workload: dict[str, Any]) -> None:
    spec = pod_spec(workload)
    assert spec.get("automountServiceAccountToken") is False
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    uid, _, gid = instructions_of(FINAL, "USER")[-1].partition(":")
    assert pod_security["runAsUser"] == int(uid), "same uid as the image's USER"
    if gid:
        assert pod_security["runAsGroup"] == int(gid)
    for container in containers(workload):
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security.get("privileged", False) is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert not security["capabilities"].get("add")
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, "read-only root: give the process a writable /tmp"


def test_termination_grace_covers_the_graceful_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    grace = pod_spec(DEPLOYMENT)["terminationGracePeriodSeconds"]
    assert grace >= default_settings(monkeypatch).graceful_timeout_seconds + 5
    configured = settings_from_env(monkeypatch, CONFIGMAP["data"])
    assert grace >= configured.graceful_timeout_seconds + 5


def test_configmap_loads_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    data = CONFIGMAP["data"]
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values are strings"
    assert env_name_problems(data) == []
    settings = settings_from_env(monkeypatch, data)
    assert settings.topics == Topics()
    for variable, topic in topic_env().items():
        assert data.get(variable, topic) == topic, variable
    assert not set(data) & set(SECRET_ENV), "secrets belong in the Secret"


@pytest.mark.parametrize("workload", [DEPLOYMENT, JOB], ids=["deployment", "job"])
def test_workload_env(workload: dict[str, Any]) -> None:
    for container in containers(workload):
        config_maps = [
            source["configMapRef"]["name"]
            for source in container.get("envFrom", [])
            if "configMapRef" in source
        ]
        assert config_maps == [CONFIGMAP["metadata"]["name"]]
        assert not any("secretRef" in source for source in container.get("envFrom", []))
        env = container.get("env", [])
        names = [variable["name"] for variable in env]
        assert len(names) == len(set(names))
        assert env_name_problems(names) == []
        for variable in env:
            name = variable["name"]
            if name in SECRET_ENV or re.search(r"PASSWORD|SECRET|TOKEN", name):
                assert "value" not in variable, f"{name}: literal secret"
                reference = variable["valueFrom"]["secretKeyRef"]
                key, optional = SECRET_ENV[name]
                assert reference["name"] == SECRET_NAME, name
                assert reference["key"] == key, name
                assert reference.get("optional", False) is optional, name
            elif "value" in variable:
                assert not URL_CREDENTIALS.search(str(variable["value"])), name
    deployment_env = {variable["name"] for variable in containers(DEPLOYMENT)[0]["env"]}
    assert set(SECRET_ENV) <= deployment_env


def test_no_literal_credentials_in_applied_manifests() -> None:
    applied = set(KUSTOMIZATION["resources"])
    for file, document in DOCUMENTS:
        if file not in applied:
            continue
        assert document["kind"] != "Secret", f"{file}: a Secret must not be applied from git"
        text = json.dumps(document)
        assert not URL_CREDENTIALS.search(text), file


def test_topics_job() -> None:
    assert JOB["apiVersion"] == "batch/v1"
    spec = pod_spec(JOB)
    assert spec["restartPolicy"] in ("OnFailure", "Never")
    assert JOB["spec"].get("backoffLimit") is not None
    (container,) = containers(JOB)
    assert container["image"] == containers(DEPLOYMENT)[0]["image"]
    args = container["args"]
    assert args[:2] == ["topics", "ensure"]
    options = dict(zip(args[2::2], args[3::2], strict=True))
    assert options == {"--partitions": "12", "--replication": "3"}
    # Every replica of the consumer group should get partitions.
    assert int(options["--partitions"]) >= DEPLOYMENT["spec"]["replicas"]


def test_example_secret_documents_every_referenced_key() -> None:
    assert EXAMPLE_SECRET["metadata"]["name"] == SECRET_NAME
    data = EXAMPLE_SECRET["stringData"]
    referenced = {
        variable["valueFrom"]["secretKeyRef"]["key"]
        for workload in (DEPLOYMENT, JOB)
        for container in containers(workload)
        for variable in container.get("env", [])
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert referenced == set(data)
    for key, value in data.items():
        if "password" in key or URL_CREDENTIALS.search(value):
            assert "CHANGE_ME" in value, f"{key}: not a placeholder"


def test_kustomization_lists_the_real_resources() -> None:
    assert KUSTOMIZATION["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    resources = KUSTOMIZATION["resources"]
    assert len(resources) == len(set(resources))
    manifests = {path.name for path in K8S_DIR.glob("*.yaml")}
    assert set(resources) == manifests - {"kustomization.yaml", "secret.example.yaml"}
    for image in KUSTOMIZATION.get("images", []):
        assert containers(DEPLOYMENT)[0]["image"].startswith(image["name"] + ":")
        assert image.get("newTag", "x") != "latest"


def test_tracing_is_wired_but_off_by_default_in_compose_and_kubernetes() -> None:
    env = service_env(SERVICES["worker"])
    assert env["OTEL_SERVICE_NAME"] == "customer-worker"
    # Empty unless the operator sets it: no exporter, no tracing, no errors without Jaeger.
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    assert configured_exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) is None
    jaeger = SERVICES["jaeger"]
    assert "4318" in (Path(ROOT / "docker-compose.yml").read_text())  # the documented endpoint
    assert jaeger["image"].split(":")[1][0].isdigit()  # pinned
    data = CONFIGMAP["data"]
    assert data["OTEL_SERVICE_NAME"] == "customer-worker"
    assert configured_exporter(data) is None  # documented, commented out: off by default
    configmap_text = (ROOT / "deploy" / "k8s" / "configmap.yaml").read_text()
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_TRACES_SAMPLER",
        "OTEL_SPAN_LINK_COUNT_LIMIT",
    ):
        assert f"#   {name}:" in configmap_text, name
