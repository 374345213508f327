#!/usr/bin/env bash
# deploy/local-stack.sh — a REAL local Kafka + Redis for customer-worker, without Docker.
#
#   deploy/local-stack.sh up        start (or reuse) Kafka and Redis, create topics, write <stack>/env
#   deploy/local-stack.sh down      stop what WE started (pid files); data is kept
#   deploy/local-stack.sh wipe      down + delete the stack dir
#   deploy/local-stack.sh status    say per service whether it runs and answers (exit 1 if not all do)
#   deploy/local-stack.sh env       print the env file: eval "$(deploy/local-stack.sh env)"
#   deploy/local-stack.sh kafka-stop|kafka-start|redis-stop|redis-start   (fault tests; data is kept)
#
# Settings (environment):
#   CW_STACK_DIR              all data, logs, pid files, generated configs, env file  [<repo>/.stack]
#   CW_CACHE_DIR              Kafka jars cache, outside the repo  [$HOME/.cache/customer-worker]
#   CW_KAFKA_VERSION          [4.3.1]; falls back to 4.2.0 then 4.1.1 if Maven cannot resolve it
#   CW_KAFKA_PORT             client listener  [19092]    (all listeners bind 127.0.0.1 only)
#   CW_KAFKA_CONTROLLER_PORT  KRaft controller [19093]
#   CW_REDIS_PORT             [16379]
#   CW_KAFKA_HEAP             broker heap, -Xmx and -Xms  [512m]
#   CW_PARTITIONS             partitions per topic  [6]
#   CW_READY_TIMEOUT          seconds to wait for a service to answer  [120]
#   KAFKA_BOOTSTRAP_SERVERS / REDIS_URL: if exported and reachable, used instead of starting ours.
#
# What was learned making this work (Debian 12, OpenJDK 17.0.15, Maven 3.8.7, Kafka 4.3.1):
#   * `mvn dependency:copy-dependencies` on a packaging=pom project with org.apache.kafka:kafka_2.13
#     yields the broker jars. Kafka's POMs leave out the SLF4J binding: we add slf4j-api 1.7.36 and
#     log4j-slf4j-impl (SLF4J 1.x binding) + log4j-api + log4j-core, all at LOG4J_VERSION.
#     kafka_2.13 4.3.1 already pulls log4j-api/log4j-core 2.25.4 transitively; we pin the same.
#   * kafka_2.13 holds kafka.Kafka, kafka.tools.StorageTool and kafka.admin.ConfigCommand, but NOT
#     TopicCommand: in 4.x that is org.apache.kafka.tools.TopicCommand in org.apache.kafka:kafka-tools,
#     a separate artifact. kafka-tools drags in connect-runtime (Jetty/Jersey/HK2, ~40 jars, +10 MB)
#     for one unrelated tool; it is excluded in deploy/local/kafka-jars.pom.xml (53 jars, ~45 MB).
#   * Without a plugin version, Maven 3.8.7 resolves maven-dependency-plugin 2.8 (from 2013); we pin
#     a current one (MAVEN_DEP_PLUGIN) so the result does not depend on the installed Maven.
#   * StorageTool: `random-uuid` prints the cluster id on stdout (its start-up INFO line would
#     pollute it: tools get a WARN-to-stderr log4j2 config). `format --standalone -t ID -c FILE -g`
#     formats a single-node dynamic quorum; -g (--ignore-formatted) makes a re-run a no-op.
#     --standalone needs controller.quorum.bootstrap.servers (not controller.quorum.voters).
#     The controller endpoint goes into the formatted metadata, so the ports of a formatted stack
#     are fixed: changing CW_KAFKA_*PORT needs `wipe` (the script checks and says so).
#   * Readiness: a TCP probe first (cheap), then TopicCommand --list with short client timeouts
#     (deploy/local/admin.properties) as the "broker answers a metadata request" check. Each CLI
#     call is a JVM start: ~1 s on 2 cores with C1-only/SerialGC flags (TOOL_JVM_OPTS), ~0.45 s
#     with a dynamic CDS archive of the CLI classes (see tool_cmd). TopicCommand creates one
#     topic per call; the script runs the creations in parallel.
#   * Data written with a newer Kafka may not start on an older one, so the version a stack was
#     formatted with is recorded in <stack>/kafka/version and reused by later runs.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
LOCAL_DIR="$SCRIPT_DIR/local"

STACK_DIR="$(realpath -m "${CW_STACK_DIR:-$REPO_DIR/.stack}")"
CACHE_DIR="$(realpath -m "${CW_CACHE_DIR:-${HOME:-/tmp}/.cache/customer-worker}")"
KAFKA_PORT="${CW_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${CW_KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${CW_REDIS_PORT:-16379}"
KAFKA_HEAP="${CW_KAFKA_HEAP:-512m}"
PARTITIONS="${CW_PARTITIONS:-6}"
READY_TIMEOUT="${CW_READY_TIMEOUT:-120}"

KAFKA_VERSIONS=("${CW_KAFKA_VERSION:-4.3.1}" 4.2.0 4.1.1)   # tried in this order
SLF4J_VERSION=1.7.36
LOG4J_VERSION=2.25.4
MAVEN_DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

# ---------------------------------------------------------------------------------------------
# Topics: "name partitions config" (config: comma-separated name=value for --config, or -).
# Created with --if-not-exists; an existing topic is left as it is.
TOPICS=(
  "customer.commands        $PARTITIONS  -"
  "order.events             $PARTITIONS  -"
  "redemption.events        $PARTITIONS  -"
  "loyalty.events           $PARTITIONS  -"
  "customer.commands.dlq    $PARTITIONS  -"
  "order.events.dlq         $PARTITIONS  -"
  "redemption.events.dlq    $PARTITIONS  -"
  "loyalty.events.dlq       $PARTITIONS  -"
  "customer.updated         $PARTITIONS  cleanup.policy=compact"
  "customer-worker.referrals      $PARTITIONS  -"
  "customer-worker.referrals.dlq  $PARTITIONS  -"
)
# ---------------------------------------------------------------------------------------------

# Paths inside the stack dir.
MARKER="$STACK_DIR/.cw-stack"
ENV_FILE="$STACK_DIR/env"
RUN_DIR="$STACK_DIR/run"
LOG_DIR="$STACK_DIR/logs"
KAFKA_DIR="$STACK_DIR/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_CONF="$KAFKA_DIR/server.properties"
KAFKA_PID="$RUN_DIR/kafka.pid"
KAFKA_LOG="$LOG_DIR/kafka.log"
KAFKA_OUT="$LOG_DIR/kafka.out"
REDIS_DIR="$STACK_DIR/redis"
REDIS_CONF="$REDIS_DIR/redis.conf"
REDIS_PID="$RUN_DIR/redis.pid"
REDIS_LOG="$LOG_DIR/redis.log"

# Short-lived CLI JVMs: start fast, small heap.
TOOL_JVM_OPTS=(-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
  -Djava.awt.headless=true "-Dlog4j2.configurationFile=$LOCAL_DIR/log4j2-tools.xml")

# Filled in by the commands.
KAFKA_VERSION=""        # the Kafka version in use
KAFKA_LIBS=""           # <cache>/kafka-<version>/libs
BOOTSTRAP=""            # the Kafka bootstrap servers in use
REDIS_URL_USED=""       # the Redis URL in use
KAFKA_MODE=""           # ours | reused | external
TOOL_CMD=()             # set by tool_cmd
TOOL_JSA=""
REDIS_MODE=""

log() { printf '[local-stack +%ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '[local-stack] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

# ---------------------------------------------------------------------------------------------
# generic helpers

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# apt_install PKG...: install Debian packages (root only); runs apt-get update when needed.
apt_install() {
  local aptlog="$LOG_DIR/apt.log"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$LOG_DIR"
  log "installing $* with apt-get (log: $aptlog)"
  if ! apt-get install -y -q "$@" >>"$aptlog" 2>&1 9>&-; then
    apt-get update -q >>"$aptlog" 2>&1 9>&- || { tail -n 5 "$aptlog" >&2; die "apt-get update failed"; }
    apt-get install -y -q "$@" >>"$aptlog" 2>&1 9>&- || { tail -n 5 "$aptlog" >&2; die "apt-get install $* failed"; }
  fi
}

# need_cmd CMD PKG: make sure CMD exists; install PKG when root, else explain and exit 1.
need_cmd() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if is_root; then
    apt_install "$pkg"
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing after installing $pkg"
  else
    die "'$cmd' is not installed. Install it with:  sudo apt-get update && sudo apt-get install -y $pkg"
  fi
}

# tcp_open HOST PORT: true if something accepts a TCP connection.
tcp_open() {
  # shellcheck disable=SC2016  # $1/$2 expand in the inner bash, on purpose
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# bootstrap_tcp_open "h1:p1,h2:p2": true if any of them accepts TCP.
bootstrap_tcp_open() {
  local hp
  local -a list
  IFS=',' read -r -a list <<<"$1"
  for hp in "${list[@]}"; do
    hp="${hp#*://}"
    tcp_open "${hp%:*}" "${hp##*:}" && return 0
  done
  return 1
}

# pid_alive PIDFILE PATTERN: prints the pid if the process runs and its command line contains PATTERN.
pid_alive() {
  local pidfile="$1" pattern="$2" pid cmdline
  [[ -s "$pidfile" ]] || return 1
  pid="$(tr -dc '0-9' <"$pidfile")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" || return 1   # may exit meanwhile
  [[ "$cmdline" == *"$pattern"* ]] || return 1
  printf '%s\n' "$pid"
}

# running PID: true while PID exists and is not a zombie (daemons are reaped by pid 1, late).
running() {
  local state
  state="$({ sed 's/.*) //' "/proc/$1/stat" | cut -c1; } 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# stop_pid NAME PIDFILE PATTERN: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
  local name="$1" pidfile="$2" pattern="$3" pid i
  if ! pid="$(pid_alive "$pidfile" "$pattern")"; then
    log "$name: no process of ours is running (nothing to stop)"
    rm -f "$pidfile"
    return 0
  fi
  log "$name: stopping pid $pid (SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    running "$pid" || break
    sleep 0.2
  done
  if running "$pid"; then
    log "$name: still running after 30 s, SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
  log "$name: stopped"
}

# ensure_stack_dir: create the stack dir layout (marked so that wipe knows it is ours).
ensure_stack_dir() {
  if [[ -d "$STACK_DIR" && ! -e "$MARKER" && -n "$(ls -A "$STACK_DIR")" ]]; then
    die "$STACK_DIR exists, is not empty and was not made by this script; set CW_STACK_DIR elsewhere"
  fi
  mkdir -p "$STACK_DIR" "$RUN_DIR" "$LOG_DIR" "$KAFKA_DATA" "$REDIS_DIR/data"
  [[ -e "$MARKER" ]] || echo "customer-worker local stack (deploy/local-stack.sh)" >"$MARKER"
}

# take_lock: serialize concurrent runs against the same stack dir. Every process that outlives
# the script (broker, redis-server, apt) is started with "9>&-": an inherited fd 9 would keep the
# lock held forever and the next run would hang.
take_lock() {
  ensure_stack_dir
  exec 9>"$STACK_DIR/.lock"
  flock -w 900 9 || die "another local-stack.sh holds $STACK_DIR/.lock"
}

# ---------------------------------------------------------------------------------------------
# Kafka jars (Maven Central → cache)

kafka_cache() { printf '%s/kafka-%s\n' "$CACHE_DIR" "$1"; }

jars_complete() {
  local dir
  dir="$(kafka_cache "$1")"
  [[ -f "$dir/.complete" && -f "$dir/libs/kafka_2.13-$1.jar" && -f "$dir/libs/kafka-tools-$1.jar" ]]
}

# fetch_jars VERSION: download the jars of VERSION into the cache (if not complete already).
fetch_jars() {
  local v="$1" dir
  dir="$(kafka_cache "$v")"
  jars_complete "$v" && return 0
  need_cmd java openjdk-17-jre-headless
  need_cmd mvn maven
  mkdir -p "$dir"
  (
    flock -w 900 8 || die "cannot lock $dir.lock"
    jars_complete "$v" && exit 0
    # (runs as an if-condition: errexit is off here, hence the explicit "|| exit 1")
    sed -e "s/@KAFKA_VERSION@/$v/g" -e "s/@SLF4J_VERSION@/$SLF4J_VERSION/g" \
      -e "s/@LOG4J_VERSION@/$LOG4J_VERSION/g" "$LOCAL_DIR/kafka-jars.pom.xml" >"$dir/pom.xml" || exit 1
    rm -rf "$dir/libs" "$dir/libs.tmp" || exit 1
    log "fetching Kafka $v jars with Maven into $dir (first run only; may take minutes; log: $dir/mvn.log)"
    if ! mvn -B -ntp -f "$dir/pom.xml" "$MAVEN_DEP_PLUGIN:copy-dependencies" \
      -DincludeScope=runtime -DoutputDirectory="$dir/libs.tmp" >"$dir/mvn.log" 2>&1; then
      log "Maven could not resolve Kafka $v (see $dir/mvn.log):"
      grep -m 2 -E '^\[ERROR\] .{20}' "$dir/mvn.log" >&2 || tail -n 5 "$dir/mvn.log" >&2
      rm -rf "$dir/libs.tmp"
      exit 1
    fi
    mv "$dir/libs.tmp" "$dir/libs" || exit 1
    printf 'kafka %s\njars %s\nfetched %s\n' "$v" "$(find "$dir/libs" -name '*.jar' | wc -l)" \
      "$(date -u +%FT%TZ)" >"$dir/.complete"
  ) 8>"$dir.lock"
}

# select_kafka: set KAFKA_LIBS; keep the version the stack was formatted with, else try the list.
select_kafka() {
  local v
  if [[ -s "$KAFKA_DIR/version" ]]; then
    v="$(<"$KAFKA_DIR/version")"
    fetch_jars "$v" || die "cannot get the jars of Kafka $v, which formatted $KAFKA_DATA (wipe to start over)"
    KAFKA_VERSION="$v"
    KAFKA_LIBS="$(kafka_cache "$v")/libs"
    return 0
  fi
  for v in "${KAFKA_VERSIONS[@]}"; do
    if fetch_jars "$v"; then
      KAFKA_VERSION="$v"
      KAFKA_LIBS="$(kafka_cache "$v")/libs"
      log "Kafka $v (jars: $KAFKA_LIBS)"
      return 0
    fi
    log "Kafka $v not available, trying the next version"
  done
  die "could not fetch any Kafka version (${KAFKA_VERSIONS[*]}); see the mvn.log files under $CACHE_DIR"
}

# kafka_libs_if_cached: set KAFKA_LIBS without downloading (for status); false if none.
kafka_libs_if_cached() {
  local v
  if [[ -s "$KAFKA_DIR/version" ]]; then
    v="$(<"$KAFKA_DIR/version")"
    jars_complete "$v" && KAFKA_LIBS="$(kafka_cache "$v")/libs" && return 0
  fi
  for v in "${KAFKA_VERSIONS[@]}"; do
    jars_complete "$v" && KAFKA_LIBS="$(kafka_cache "$v")/libs" && return 0
  done
  return 1
}

# tool_cmd [dump]: set TOOL_CMD to the java command for Kafka CLI classes. A dynamic CDS archive
# of the classes they load (made once by the first successful --list, kept next to the jars, one
# per java binary) halves each CLI JVM start (~1.0 s -> ~0.45 s here). An unusable archive is
# ignored silently by the JVM (-Xlog:cds=off).
tool_cmd() {
  local java_bin
  java_bin="$(readlink -f "$(command -v java)")"
  TOOL_JSA="${KAFKA_LIBS%/libs}/tools-$(printf '%s %s' "$java_bin" "$(stat -c %Y "$java_bin")" | cksum | cut -d' ' -f1).jsa"
  TOOL_CMD=(java "${TOOL_JVM_OPTS[@]}" -Xlog:cds=off -Xlog:cds+dynamic=off)
  if [[ -s "$TOOL_JSA" ]]; then
    TOOL_CMD+=("-XX:SharedArchiveFile=$TOOL_JSA")
  elif [[ "${1:-}" == dump ]]; then
    TOOL_CMD+=("-XX:ArchiveClassesAtExit=$TOOL_JSA.$$")
  fi
  TOOL_CMD+=(-cp "$KAFKA_LIBS/*")
}

# kafka_tool CLASS ARGS...: run a Kafka CLI class from the cached jars.
kafka_tool() {
  tool_cmd
  "${TOOL_CMD[@]}" "$@"
}

topic_cmd() {
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$LOCAL_DIR/admin.properties" "$@"
}

# kafka_answers BOOTSTRAP: true if a broker answers a metadata request (TopicCommand --list).
kafka_answers() {
  local rc=0
  bootstrap_tcp_open "$1" || return 1
  tool_cmd dump
  timeout 40 "${TOOL_CMD[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" \
    --command-config "$LOCAL_DIR/admin.properties" --list >/dev/null 2>&1 || rc=$?
  if [[ -f "$TOOL_JSA.$$" ]]; then
    if ((rc == 0)); then mv -f "$TOOL_JSA.$$" "$TOOL_JSA"; else rm -f "$TOOL_JSA.$$"; fi
  fi
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Kafka broker

write_server_properties() {
  cat >"$KAFKA_CONF" <<EOF
# Generated by deploy/local-stack.sh — single-node KRaft (broker + controller), loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA

# One node: every replication factor / min ISR is 1.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Test box behaviour.
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.retention.bytes=268435456
log.segment.bytes=67108864
log.retention.check.interval.ms=60000
log.cleaner.dedupe.buffer.size=33554432
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
}

# kafka_check_ports: a formatted stack keeps its ports (the controller endpoint is in the metadata).
kafka_check_ports() {
  local want="$KAFKA_PORT $KAFKA_CONTROLLER_PORT" have
  [[ -s "$KAFKA_DIR/ports" ]] || return 0
  have="$(<"$KAFKA_DIR/ports")"
  [[ "$have" == "$want" ]] || die "stack $STACK_DIR was formatted with Kafka ports '$have' (client controller), \
not '$want': set CW_KAFKA_PORT/CW_KAFKA_CONTROLLER_PORT back, or run '$0 wipe' first"
}

kafka_format() {
  local cluster_id
  if [[ ! -s "$KAFKA_DIR/cluster-id" ]]; then
    cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid)" || die "StorageTool random-uuid failed"
    printf '%s\n' "$cluster_id" >"$KAFKA_DIR/cluster-id"
  fi
  cluster_id="$(<"$KAFKA_DIR/cluster-id")"
  [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
  log "formatting Kafka storage (cluster id $cluster_id)"
  kafka_tool kafka.tools.StorageTool format --standalone -g -t "$cluster_id" -c "$KAFKA_CONF" \
    >>"$LOG_DIR/kafka-format.log" 2>&1 \
    || { tail -n 10 "$LOG_DIR/kafka-format.log" >&2; die "StorageTool format failed for $KAFKA_DATA"; }
  printf '%s %s\n' "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" >"$KAFKA_DIR/ports"
  printf '%s\n' "$KAFKA_VERSION" >"$KAFKA_DIR/version"
}

kafka_launch() {
  log "starting Kafka broker on 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT, heap $KAFKA_HEAP)"
  setsid nohup java "-Xmx$KAFKA_HEAP" "-Xms$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$LOCAL_DIR/log4j2-broker.xml" "-Dcw.kafka.log.file=$KAFKA_LOG" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF" >>"$KAFKA_OUT" 2>&1 </dev/null 9>&- &
  echo $! >"$KAFKA_PID"
}

kafka_wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    # The launched PID, not its command line: right after the fork it is still this shell,
    # before setsid/nohup exec java, so matching the config path there would read as an exit.
    if ! running "$(tr -dc '0-9' <"$KAFKA_PID")"; then
      log "Kafka exited during start-up; last lines of $KAFKA_OUT and $KAFKA_LOG:"
      tail -n 15 "$KAFKA_OUT" "$KAFKA_LOG" >&2 2>/dev/null || true
      die "Kafka did not start (logs: $LOG_DIR)"
    fi
    if tcp_open 127.0.0.1 "$KAFKA_PORT" && kafka_answers "127.0.0.1:$KAFKA_PORT"; then
      return 0
    fi
    sleep 1
  done
  die "Kafka did not answer on 127.0.0.1:$KAFKA_PORT within ${READY_TIMEOUT}s; see $KAFKA_LOG and $KAFKA_OUT"
}

# kafka_start: start our broker (or notice it runs). Needs select_kafka first.
kafka_start() {
  local pid
  if pid="$(pid_alive "$KAFKA_PID" "$KAFKA_CONF")"; then
    log "Kafka: already running (pid $pid)"
  else
    if tcp_open 127.0.0.1 "$KAFKA_PORT" || tcp_open 127.0.0.1 "$KAFKA_CONTROLLER_PORT"; then
      die "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT on 127.0.0.1 is taken by another process; \
set CW_KAFKA_PORT / CW_KAFKA_CONTROLLER_PORT"
    fi
    kafka_check_ports
    write_server_properties
    kafka_format
    kafka_launch
  fi
  kafka_wait_ready
  BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
  KAFKA_MODE=ours
  log "Kafka: ready at $BOOTSTRAP"
}

# kafka_up: use $KAFKA_BOOTSTRAP_SERVERS, or whatever answers on our port, or start ours.
kafka_up() {
  select_kafka
  if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    if kafka_answers "$KAFKA_BOOTSTRAP_SERVERS"; then
      BOOTSTRAP="$KAFKA_BOOTSTRAP_SERVERS"
      KAFKA_MODE=external
      log "Kafka: using KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP (reachable; not starting ours)"
      return 0
    fi
    log "Kafka: KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS does not answer; using the local stack"
  fi
  if ! pid_alive "$KAFKA_PID" "$KAFKA_CONF" >/dev/null && tcp_open 127.0.0.1 "$KAFKA_PORT"; then
    kafka_answers "127.0.0.1:$KAFKA_PORT" \
      || die "127.0.0.1:$KAFKA_PORT is taken by something that is not a Kafka broker; set CW_KAFKA_PORT"
    BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
    KAFKA_MODE=reused
    log "Kafka: a broker already answers at $BOOTSTRAP (not ours); reusing it"
    return 0
  fi
  kafka_start
}

# create_topic NAME PARTITIONS CONFIG: one TopicCommand --create --if-not-exists (one JVM).
create_topic() {
  local name="$1" parts="$2" config="$3" c
  local -a args=(--create --if-not-exists --topic "$name" --partitions "$parts") cfgs
  if [[ "$config" != "-" ]]; then
    IFS=',' read -r -a cfgs <<<"$config"
    for c in "${cfgs[@]}"; do args+=(--config "$c"); done
  fi
  topic_cmd "${args[@]}"
}

# ensure_topics: create the topics of TOPICS missing on $BOOTSTRAP, one JVM each, in parallel
# (each costs ~0.5-1 s of CPU; parallel helps on an idle 2-core box, and is no worse under load).
ensure_topics() {
  local existing spec name parts config i failed=0 tmp
  local -a pids=() names=()
  existing="$(topic_cmd --list 2>/dev/null)" || die "cannot list topics on $BOOTSTRAP"
  tmp="$(mktemp -d)"
  for spec in "${TOPICS[@]}"; do
    read -r name parts config <<<"$spec"
    grep -qxF "$name" <<<"$existing" && continue
    create_topic "$name" "$parts" "$config" >"$tmp/$name.out" 2>&1 &
    pids+=("$!")
    names+=("$name")
  done
  for i in "${!pids[@]}"; do
    # TopicCommand warns on stdout about '.' in topic names (metric names collide with '_'): dropped.
    if wait "${pids[$i]}"; then
      sed -e '/limitations in metric names/d' -e 's/^/[local-stack]     /' "$tmp/${names[$i]}.out" >&2
    else
      log "could not create topic ${names[$i]} on $BOOTSTRAP:"
      sed 's/^/    /' "$tmp/${names[$i]}.out" >&2
      failed=1
    fi
  done
  rm -rf "$tmp"
  ((failed == 0)) || die "topic creation failed"
  log "topics: ${#TOPICS[@]} present (${#names[@]} created)"
}

# ---------------------------------------------------------------------------------------------
# Redis

# redis_url_answers URL: true if PING gets PONG.
redis_url_answers() {
  [[ "$(timeout 5 redis-cli -u "$1" ping 2>/dev/null)" == "PONG" ]]
}

# redis_port_answers PORT: PING 127.0.0.1:PORT over bash /dev/tcp (works before redis-cli exists).
redis_port_answers() {
  # shellcheck disable=SC2016  # expands in the inner bash, on purpose
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "PING\r\n" >&3; IFS= read -r line <&3; [[ "$line" == "+PONG"* ]]' _ "$1" 2>/dev/null
}

# install_redis: apt-get install redis-server, then make sure Debian's own service is not left running.
install_redis() {
  is_root || die "redis-server is not installed. Install it with:
    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
    sudo service redis-server stop   # this script starts its own instance on port $REDIS_PORT"
  apt_install redis-server
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now redis-server >/dev/null 2>&1 9>&- || true
  elif command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 9>&- || true
  fi
  if [[ -s /run/redis/redis-server.pid ]]; then   # the Debian service (port 6379), never ours
    kill -TERM "$(tr -dc '0-9' </run/redis/redis-server.pid)" 2>/dev/null || true
  fi
}

# redis_proc_title: what our redis-server shows as its command line ("redis-server 127.0.0.1:PORT"),
# with the port of the generated config (so a pid reused by another redis is never taken for ours).
redis_proc_title() {
  local port="$REDIS_PORT"
  [[ -f "$REDIS_CONF" ]] && port="$(sed -n 's/^port //p' "$REDIS_CONF")"
  printf 'redis-server 127.0.0.1:%s\n' "$port"
}

write_redis_conf() {
  cat >"$REDIS_CONF" <<EOF
# Generated by deploy/local-stack.sh — loopback only, every write fsynced to the AOF.
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
pidfile $REDIS_PID
logfile $REDIS_LOG
loglevel notice
dir $REDIS_DIR/data
appendonly yes
appendfsync always
save ""
EOF
}

redis_wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]] && return 0
    sleep 0.2
  done
  tail -n 15 "$REDIS_LOG" >&2 2>/dev/null || true
  die "Redis did not answer on 127.0.0.1:$REDIS_PORT within ${READY_TIMEOUT}s; see $REDIS_LOG"
}

# redis_start: start our redis-server (or notice it runs).
redis_start() {
  local pid
  if pid="$(pid_alive "$REDIS_PID" "$(redis_proc_title)")"; then
    log "Redis: already running (pid $pid)"
  else
    command -v redis-server >/dev/null 2>&1 || install_redis
    tcp_open 127.0.0.1 "$REDIS_PORT" && die "port $REDIS_PORT on 127.0.0.1 is taken; set CW_REDIS_PORT"
    write_redis_conf
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server "$REDIS_CONF" >&2 9>&- || die "redis-server failed to start; see $REDIS_LOG"
  fi
  redis_wait_ready
  REDIS_URL_USED="redis://127.0.0.1:$REDIS_PORT/0"
  REDIS_MODE=ours
  log "Redis: ready at $REDIS_URL_USED"
}

# redis_up: use $REDIS_URL, or whatever answers on our port, or start ours.
redis_up() {
  [[ -n "${REDIS_URL:-}" ]] && need_cmd redis-cli redis-tools
  if [[ -n "${REDIS_URL:-}" ]] && redis_url_answers "$REDIS_URL"; then
    REDIS_URL_USED="$REDIS_URL"
    REDIS_MODE=external
    log "Redis: using REDIS_URL=$REDIS_URL (reachable; not starting ours)"
    return 0
  fi
  [[ -n "${REDIS_URL:-}" ]] && log "Redis: REDIS_URL=$REDIS_URL does not answer; using the local stack"
  if ! pid_alive "$REDIS_PID" "$(redis_proc_title)" >/dev/null && redis_port_answers "$REDIS_PORT"; then
    REDIS_URL_USED="redis://127.0.0.1:$REDIS_PORT/0"
    REDIS_MODE=reused
    log "Redis: something already answers PONG at 127.0.0.1:$REDIS_PORT (not ours); reusing it"
    return 0
  fi
  redis_start
}

# ---------------------------------------------------------------------------------------------
# commands

write_env_file() {
  {
    echo "# Generated by deploy/local-stack.sh up ($(date -u +%FT%TZ)); kafka: $KAFKA_MODE, redis: $REDIS_MODE"
    printf 'export KAFKA_BOOTSTRAP_SERVERS=%q\n' "$BOOTSTRAP"
    printf 'export REDIS_URL=%q\n' "$REDIS_URL_USED"
    printf 'export CW_STACK_DIR=%q\n' "$STACK_DIR"
  } >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

cmd_up() {
  local t0=$SECONDS
  take_lock
  need_cmd java openjdk-17-jre-headless
  kafka_up
  redis_up
  ensure_topics
  write_env_file
  log "stack is up ($((SECONDS - t0))s)"
  log "  KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP   ($KAFKA_MODE)"
  log "  REDIS_URL=$REDIS_URL_USED   ($REDIS_MODE)"
  log "  stack dir: $STACK_DIR   logs: $LOG_DIR"
  log "  env:  source $ENV_FILE   or   eval \"\$($0 env)\""
  log "  stop: $0 down   (data kept)   |   $0 wipe   (delete $STACK_DIR)"
}

cmd_kafka_start() {
  take_lock
  need_cmd java openjdk-17-jre-headless
  select_kafka
  kafka_start
}

cmd_redis_start() {
  take_lock
  redis_start
}

cmd_kafka_stop() { [[ -d "$STACK_DIR" ]] || return 0; stop_pid Kafka "$KAFKA_PID" "$KAFKA_CONF"; }
cmd_redis_stop() { [[ -d "$STACK_DIR" ]] || return 0; stop_pid Redis "$REDIS_PID" "$(redis_proc_title)"; }

cmd_down() {
  [[ -d "$STACK_DIR" ]] || { log "nothing to stop: $STACK_DIR does not exist"; return 0; }
  take_lock
  cmd_kafka_stop
  cmd_redis_stop
  log "down (data kept in $STACK_DIR)"
}

cmd_wipe() {
  case "$STACK_DIR" in
    "" | / | "$REPO_DIR" | "${HOME:-/}" | "$CACHE_DIR") die "refusing to wipe '$STACK_DIR'" ;;
  esac
  [[ -d "$STACK_DIR" ]] || { log "nothing to wipe: $STACK_DIR does not exist"; return 0; }
  [[ -e "$MARKER" ]] || die "refusing to wipe $STACK_DIR: no $MARKER (not made by this script)"
  cmd_down
  rm -rf -- "$STACK_DIR"
  log "wiped $STACK_DIR"
}

# status_line NAME PROCESS ANSWERS
status_line() { printf '%-6s %-28s %s\n' "$1" "$2" "$3"; }

cmd_status() {
  local pid ok=0 boot="127.0.0.1:$KAFKA_PORT" url="redis://127.0.0.1:$REDIS_PORT/0"
  if [[ -s "$ENV_FILE" ]]; then
    # shellcheck disable=SC1090
    boot="$(source "$ENV_FILE" && printf '%s' "$KAFKA_BOOTSTRAP_SERVERS")"
    # shellcheck disable=SC1090
    url="$(source "$ENV_FILE" && printf '%s' "$REDIS_URL")"
  fi
  # Kafka
  if pid="$(pid_alive "$KAFKA_PID" "$KAFKA_CONF")"; then
    pid="running (ours, pid $pid)"
  else
    pid="not running (ours)"
  fi
  if kafka_libs_if_cached && kafka_answers "$boot"; then
    status_line kafka "$pid" "answers at $boot"
  elif [[ -z "$KAFKA_LIBS" ]] && bootstrap_tcp_open "$boot"; then
    status_line kafka "$pid" "port open at $boot (no cached jars to check metadata)"
  else
    status_line kafka "$pid" "does NOT answer at $boot"
    ok=1
  fi
  # Redis
  if pid="$(pid_alive "$REDIS_PID" "$(redis_proc_title)")"; then
    pid="running (ours, pid $pid)"
  else
    pid="not running (ours)"
  fi
  if command -v redis-cli >/dev/null 2>&1 && redis_url_answers "$url"; then
    status_line redis "$pid" "answers at $url"
  else
    status_line redis "$pid" "does NOT answer at $url"
    ok=1
  fi
  printf 'stack  %s%s\n' "$STACK_DIR" "$([[ -s "$ENV_FILE" ]] || echo ' (no env file: not up)')"
  return "$ok"
}

cmd_env() {
  [[ -s "$ENV_FILE" ]] || die "the stack is not up ($ENV_FILE missing): run $0 up"
  (
    # shellcheck disable=SC1090
    source "$ENV_FILE"
    bootstrap_tcp_open "$KAFKA_BOOTSTRAP_SERVERS" || die "Kafka at $KAFKA_BOOTSTRAP_SERVERS is down: run $0 up"
    if command -v redis-cli >/dev/null 2>&1; then
      redis_url_answers "$REDIS_URL" || die "Redis at $REDIS_URL is down: run $0 up"
    fi
  )
  cat "$ENV_FILE"
}

main() {
  [[ $# -eq 1 ]] || usage
  case "$1" in
    up) cmd_up ;;
    down) cmd_down ;;
    wipe) cmd_wipe ;;
    status) cmd_status ;;
    env) cmd_env ;;
    kafka-start) cmd_kafka_start ;;
    kafka-stop) cmd_kafka_stop ;;
    redis-start) cmd_redis_start ;;
    redis-stop) cmd_redis_stop ;;
    -h | --help | help) usage 0 ;;
    *) usage ;;
  esac
}

main "$@"
