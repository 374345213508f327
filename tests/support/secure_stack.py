"""Secured Kafka and Redis for the security tests, from the same binaries as the local stack.

A dedicated single-node KRaft broker whose client listeners only take SASL-authenticated
clients (SCRAM-SHA-512 or PLAIN, over plaintext or TLS), and a TLS-only `redis-server` whose
default user is disabled. Both refuse unauthenticated clients by design: that is what makes a
test fail when the worker does not send its credentials. Everything listens on free loopback
ports and lives in one temporary directory, deleted at the end; the shared stack is untouched.
"""

import asyncio
import base64
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import redis
import redis.asyncio
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from tests.support.services import REPO, free_ports

LOCAL_CONFIG = REPO / "deploy" / "local"

#: Longest wait for a service to answer after its start (a loaded 2-core box is slow).
READY_TIMEOUT = 120.0

#: Commands the worker's own code sends: PING (/readyz), SCRIPT LOAD and EVALSHA (the commit
#: step), HGETALL, HGET and ZRANGE (`CustomerStore`: reading records and replay logs,
#: `customer-worker get`). AUTH needs no permission.
CLIENT_COMMANDS = ("ping", "script|load", "evalsha", "hget", "hgetall", "zrange")
#: Commands `worker/store/commit.lua` calls: Redis 7 checks a script's calls against the ACL of
#: the user running it, keys included.
SCRIPT_COMMANDS = (
    "del",
    "hdel",
    "hgetall",
    "hmget",
    "hset",
    "zadd",
    "zcard",
    "zrange",
    "zremrangebyrank",
    "zremrangebyscore",
)
#: Sent by redis-py on connect, its refusal ignored; left out of the rules because Redis < 7.2
#: does not know it (and rejects a rule naming it). Redis >= 7.2 logs its refusal in ACL LOG.
TOLERATED_DENIALS = frozenset({"client|setinfo"})


def worker_redis_acl(prefix: str = "cw") -> str:
    """Least-privilege ACL rules of the worker's Redis user for key prefix `prefix`
    (CW_KEY_PREFIX): its own keys only, no pub/sub channel, only the commands it uses."""
    commands = " ".join(f"+{name}" for name in sorted({*CLIENT_COMMANDS, *SCRIPT_COMMANDS}))
    return f"resetkeys ~{prefix}:* resetchannels -@all {commands}"


#: The rules for the default prefix, as the README recommends them:
#: `user customer-worker on >PASSWORD <rules>` in an ACL file, or `ACL SETUSER` with them.
WORKER_REDIS_ACL = worker_redis_acl()


def _secret() -> str:
    return secrets.token_hex(16)


def _tail(*logs: Path, lines: int = 25) -> str:
    parts = []
    for log in logs:
        try:
            text = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = ["(no log)"]
        parts.append(f"--- {log}\n" + "\n".join(text))
    return "\n".join(parts)


@contextmanager
def _server(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server process for the block, its output in `log`; SIGTERM (then SIGKILL) after."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until(
    answers: Callable[[], bool], process: subprocess.Popen[bytes], what: str, *logs: Path
) -> None:
    """Poll `answers` until it holds; fail with the logs if the process dies or time is up."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not answers():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}) on start:\n{_tail(*logs)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {READY_TIMEOUT}s:\n{_tail(*logs)}")
        time.sleep(0.5)


# --- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA, and a server certificate it signed for IP:127.0.0.1 and DNS:localhost (PEM)."""

    ca: Path
    cert: Path
    key: Path  # unencrypted PKCS#8

    @property
    def chain(self) -> Path:
        """Key, certificate and CA in one file: what Kafka's PEM keystore reads."""
        return self.cert.with_name("keystore.pem")


def _openssl(directory: Path, *args: str) -> None:
    done = subprocess.run(
        ["openssl", *args], cwd=directory, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def make_ca(directory: Path) -> tuple[Path, Path]:
    """A self-signed CA in `directory`: (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        directory,
        *("req", "-x509", "-newkey", "rsa:2048", "-noenc", "-days", "2"),
        *("-keyout", "ca.key", "-out", "ca.pem"),
        *("-subj", f"/CN=customer-worker test CA {uuid.uuid4().hex[:8]}"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    return directory / "ca.pem", directory / "ca.key"


def make_pki(directory: Path) -> Pki:
    """A CA and a server certificate for loopback in `directory` (what a TLS client checks:
    the chain up to the CA it trusts, and the name it dialled among the SANs)."""
    ca, ca_key = make_ca(directory)
    (directory / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        directory,
        *("req", "-newkey", "rsa:2048", "-noenc", "-keyout", "server.key"),
        *("-out", "server.csr", "-subj", "/CN=localhost"),
    )
    _openssl(
        directory,
        *("x509", "-req", "-in", "server.csr", "-CA", ca.name, "-CAkey", ca_key.name),
        *("-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem"),
    )
    pki = Pki(ca=ca, cert=directory / "server.pem", key=directory / "server.key")
    pki.chain.write_text(pki.key.read_text() + pki.cert.read_text() + ca.read_text())
    return pki


# --- Kafka ----------------------------------------------------------------------------------


def kafka_libs() -> Path:
    """The broker jars `deploy/local-stack.sh` downloaded (the newest version cached)."""
    cache = Path(os.environ.get("CW_CACHE_DIR") or Path.home() / ".cache" / "customer-worker")
    complete = [marker.parent for marker in cache.glob("kafka-*/.complete")]
    if not complete:
        raise RuntimeError(
            f"no Kafka jars under {cache}: run `deploy/local-stack.sh up` once (it downloads "
            "them from Maven Central); the security tests start their own broker from them"
        )

    def version(directory: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in directory.name.removeprefix("kafka-").split("."))

    return max(complete, key=version) / "libs"


@dataclass(frozen=True)
class KafkaUser:
    """Credentials the broker accepts, and the mechanism that proves them."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-512"]
    name: str
    password: str


@dataclass(frozen=True)
class SecureKafka:
    """A running broker: its secured listeners and who may log in."""

    sasl_plaintext: str  # bootstrap servers of the SASL_PLAINTEXT listener
    sasl_ssl: str  # bootstrap servers of the SASL_SSL listener (server cert of `ca`)
    ca: Path
    scram: KafkaUser
    plain: KafkaUser

    def bootstrap(self, protocol: Literal["SASL_PLAINTEXT", "SASL_SSL"]) -> str:
        """The listener speaking `protocol`."""
        return self.sasl_plaintext if protocol == "SASL_PLAINTEXT" else self.sasl_ssl


def _kafka_properties(directory: Path, pki: Pki, plain: KafkaUser, ports: list[int]) -> str:
    """Broker config: controller and inter-broker traffic on plaintext listeners of their own,
    clients only through the two SASL listeners (SCRAM users are created at format time)."""
    controller, internal, sasl_plaintext, sasl_ssl = ports
    scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain_login = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_{plain.name}="{plain.password}";'
    )
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
        f"listeners=CONTROLLER://127.0.0.1:{controller},INTERNAL://127.0.0.1:{internal},"
        f"SASL_PLAINTEXT://127.0.0.1:{sasl_plaintext},SASL_SSL://127.0.0.1:{sasl_ssl}",
        f"advertised.listeners=CONTROLLER://127.0.0.1:{controller},"
        f"INTERNAL://127.0.0.1:{internal},SASL_PLAINTEXT://127.0.0.1:{sasl_plaintext},"
        f"SASL_SSL://127.0.0.1:{sasl_ssl}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=INTERNAL",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,"
        "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN",
        *(
            f"listener.name.{listener}.{mechanism}.sasl.jaas.config={login}"
            for listener in ("sasl_plaintext", "sasl_ssl")
            for mechanism, login in (("scram-sha-512", scram_login), ("plain", plain_login))
        ),
        "listener.name.sasl_ssl.ssl.keystore.type=PEM",
        f"listener.name.sasl_ssl.ssl.keystore.location={pki.chain}",
        f"log.dirs={directory / 'data'}",
        "auto.create.topics.enable=false",
        "delete.topic.enable=true",
        "num.partitions=1",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=3",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "num.network.threads=2",
        "num.io.threads=2",
    ]
    return "\n".join(lines) + "\n"


def _cluster_id() -> str:
    """A KRaft cluster id (base64url of a UUID), not starting with '-' like Kafka's own."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _kafka_answers(bootstrap: str, user: KafkaUser) -> bool:
    """Whether the broker serves a metadata request to `user` (probed with aiokafka directly,
    not through the worker's code under test)."""

    async def probe() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=user.mechanism,
            sasl_plain_username=user.name,
            sasl_plain_password=user.password,
            request_timeout_ms=5000,
        )
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()  # cheap, and quiet
        asyncio.run(probe())
    except (KafkaError, OSError, TimeoutError):
        return False
    return True


@contextmanager
def secure_kafka(directory: Path, pki: Pki) -> Iterator[SecureKafka]:
    """Format and start the broker in `directory`; stop it after the block."""
    libs = kafka_libs()
    directory.mkdir(parents=True)
    ports = free_ports(4)
    scram = KafkaUser("SCRAM-SHA-512", "cwscram", _secret())
    plain = KafkaUser("PLAIN", "cwplain", _secret())
    config = directory / "server.properties"
    config.write_text(_kafka_properties(directory, pki, plain, ports))
    java = ["java", "-Djava.awt.headless=true", "-cp", f"{libs}/*"]
    formatted = subprocess.run(
        [
            *java,
            *("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"),
            f"-Dlog4j2.configurationFile={LOCAL_CONFIG / 'log4j2-tools.xml'}",
            *("kafka.tools.StorageTool", "format", "--standalone"),
            *("-t", _cluster_id(), "-c", str(config)),
            *("--add-scram", f"{scram.mechanism}=[name={scram.name},password={scram.password}]"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=READY_TIMEOUT,
    )
    if formatted.returncode != 0:
        raise RuntimeError(f"StorageTool format failed:\n{formatted.stdout}{formatted.stderr}")
    log, out = directory / "kafka.log", directory / "kafka.out"
    broker = [
        *java,
        *("-Xmx384m", "-Xms384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"),
        f"-Dlog4j2.configurationFile={LOCAL_CONFIG / 'log4j2-broker.xml'}",
        f"-Dcw.kafka.log.file={log}",
        *("kafka.Kafka", str(config)),
    ]
    with _server(broker, out) as process:
        kafka = SecureKafka(
            sasl_plaintext=f"127.0.0.1:{ports[2]}",
            sasl_ssl=f"127.0.0.1:{ports[3]}",
            ca=pki.ca,
            scram=scram,
            plain=plain,
        )
        _wait_until(lambda: _kafka_answers(kafka.sasl_plaintext, scram), process, "Kafka", out, log)
        yield kafka


# --- Redis ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisUser:
    """An ACL user of the secured Redis."""

    name: str
    password: str


@dataclass(frozen=True)
class SecureRedis:
    """A running TLS-only Redis (no plaintext port; the default user is off)."""

    url: str  # rediss://127.0.0.1:<port>/0
    ca: Path
    admin: RedisUser  # every command and key: for the tests' own checks

    def client(self, user: RedisUser | None) -> redis.asyncio.Redis:
        """An async client logged in as `user` (None: anonymous), trusting the CA."""
        return redis.asyncio.Redis.from_url(
            self.url,
            username=user and user.name,
            password=user and user.password,
            ssl_ca_certs=str(self.ca),
            decode_responses=True,
        )

    async def add_worker_user(self, prefix: str) -> RedisUser:
        """A new user with the worker's least-privilege rules for `prefix`."""
        user = RedisUser(f"worker-{prefix}", _secret())
        admin = self.client(self.admin)
        try:
            rules = worker_redis_acl(prefix).split()
            await admin.execute_command(
                "ACL", "SETUSER", user.name, "reset", "on", f">{user.password}", *rules
            )
        finally:
            await admin.aclose()
        return user


@contextmanager
def secure_redis(directory: Path, pki: Pki) -> Iterator[SecureRedis]:
    """Start `redis-server` in `directory` (TLS only, ACL users, no persistence)."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed: run `deploy/local-stack.sh up` first")
    directory.mkdir(parents=True)
    (port,) = free_ports(1)
    admin = RedisUser("admin", _secret())
    config = directory / "redis.conf"
    config.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                "port 0",
                f"tls-port {port}",
                f"tls-cert-file {pki.cert}",
                f"tls-key-file {pki.key}",
                f"tls-ca-cert-file {pki.ca}",
                "tls-auth-clients no",
                "appendonly no",
                'save ""',
                f"dir {directory}",
                'logfile ""',
                "user default off",
                f"user {admin.name} on >{admin.password} ~* &* +@all",
            ]
        )
        + "\n"
    )
    log = directory / "redis.log"
    with _server([server, str(config)], log) as process:
        found = SecureRedis(f"rediss://127.0.0.1:{port}/0", pki.ca, admin)

        def answers() -> bool:
            client = redis.Redis(
                port=port,
                ssl=True,
                ssl_ca_certs=str(pki.ca),
                username=admin.name,
                password=admin.password,
                socket_timeout=5,
            )
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
            finally:
                client.close()

        _wait_until(answers, process, "Redis", log)
        yield found


# --- both -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecureStack:
    """The secured services, and a CA that signed none of their certificates."""

    kafka: SecureKafka
    redis: SecureRedis
    foreign_ca: Path


@contextmanager
def secure_stack() -> Iterator[SecureStack]:
    """Certificates, broker and Redis in one temporary directory, all gone after the block."""
    root = Path(tempfile.mkdtemp(prefix="cw-secure-"))
    try:
        pki = make_pki(root / "pki")
        foreign_ca, _ = make_ca(root / "foreign-ca")
        with secure_kafka(root / "kafka", pki) as kafka, secure_redis(root / "redis", pki) as rds:
            yield SecureStack(kafka, rds, foreign_ca)
    finally:
        shutil.rmtree(root, ignore_errors=True)
