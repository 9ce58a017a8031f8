#!/usr/bin/env bash
# Installs (Debian packages) and starts the servers that bench/peers/work-queue.ts compares
# zeromq-pirate with, each bound to 127.0.0.1 only, with its data in $PEERS_DIR
# (default /tmp/zeromq-pirate-peers):
#
#   RabbitMQ  127.0.0.1:5672   (Erlang distribution 127.0.0.1:25672, epmd 127.0.0.1:4369)
#   NATS      127.0.0.1:4222   JetStream, file storage in $PEERS_DIR/nats
#   Redis     127.0.0.1:6379   appendonly yes, appendfsync everysec, in $PEERS_DIR/redis
#
# Idempotent: installs only what is missing and starts only what does not answer yet. Run as
# root (apt-get). `bash bench/peers/stop.sh` stops them again. A manual benchmark, not a test:
# the ports are the servers' well-known ones, on loopback only.
set -euo pipefail

PEERS_DIR=${PEERS_DIR:-/tmp/zeromq-pirate-peers}
RABBIT_NODE=${RABBIT_NODE:-pirate-bench@localhost}
HOST=127.0.0.1

log() { printf 'peers: %s\n' "$*" >&2; }

# True when something accepts TCP connections on 127.0.0.1:$1.
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# Waits (bounded) until port $1 answers; $2 names the server, $3 its log.
await_port() {
  local port=$1 name=$2 logfile=$3
  for _ in $(seq 1 120); do
    if answers "$port"; then
      log "$name answers on $HOST:$port"
      return 0
    fi
    sleep 0.5
  done
  log "$name did not answer on $HOST:$port within 60 s; its log: $logfile"
  tail -n 30 "$logfile" >&2 || true
  return 1
}

# --- install -----------------------------------------------------------------------------------
missing=()
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || missing+=(rabbitmq-server)
command -v nats-server >/dev/null || missing+=(nats-server)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]} > 0)); then
  log "installing ${missing[*]} (Debian packages)"
  # Keep the packages from starting their services with the stock configuration (RabbitMQ's
  # listens on every interface): this script starts them below, on loopback only.
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  trap 'if ((created_policy)); then rm -f /usr/sbin/policy-rc.d; fi' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$PEERS_DIR"

# --- Redis: AOF, fsync every second ------------------------------------------------------------
if answers 6379; then
  log "something already answers on $HOST:6379 (Redis started before?): left as it is"
  aof=$(timeout 5 redis-cli -h "$HOST" -p 6379 config get appendonly 2>/dev/null | tail -n 1 || true)
  [[ $aof == yes ]] || log "warning: that Redis has appendonly '${aof:-?}', not yes: stop it first"
else
  mkdir -p "$PEERS_DIR/redis"
  redis-server --bind "$HOST" --port 6379 --protected-mode yes \
    --appendonly yes --appendfsync everysec --save "" --maxmemory-policy noeviction \
    --dir "$PEERS_DIR/redis" --daemonize yes \
    --pidfile "$PEERS_DIR/redis.pid" --logfile "$PEERS_DIR/redis.log"
  await_port 6379 Redis "$PEERS_DIR/redis.log"
fi

# --- NATS: JetStream with file storage ---------------------------------------------------------
if answers 4222; then
  log "something already answers on $HOST:4222 (NATS started before?): left as it is"
else
  mkdir -p "$PEERS_DIR/nats"
  setsid nats-server -a "$HOST" -p 4222 -js -sd "$PEERS_DIR/nats" \
    -P "$PEERS_DIR/nats.pid" -l "$PEERS_DIR/nats.log" </dev/null >/dev/null 2>&1 &
  await_port 4222 NATS "$PEERS_DIR/nats.log"
fi

# --- RabbitMQ: AMQP, Erlang distribution and epmd on loopback ----------------------------------
rabbit_env() {
  export HOME="$PEERS_DIR/rabbitmq/home" # the Erlang cookie lives there
  export RABBITMQ_NODENAME="$RABBIT_NODE"
  export RABBITMQ_NODE_IP_ADDRESS="$HOST" RABBITMQ_NODE_PORT=5672 RABBITMQ_DIST_PORT=25672
  export ERL_EPMD_ADDRESS="$HOST"
  export RABBITMQ_CONFIG_FILE="$PEERS_DIR/rabbitmq/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$PEERS_DIR/rabbitmq/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$PEERS_DIR/rabbitmq/mnesia"
  export RABBITMQ_LOG_BASE="$PEERS_DIR/rabbitmq/log"
  export RABBITMQ_PID_FILE="$PEERS_DIR/rabbitmq.pid"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}
if answers 5672; then
  log "something already answers on $HOST:5672 (RabbitMQ started before?): left as it is"
else
  rabbit_env
  mkdir -p "$HOME" "$RABBITMQ_LOG_BASE" "$RABBITMQ_MNESIA_BASE"
  cat >"$RABBITMQ_CONFIG_FILE" <<CONF
listeners.tcp.default = $HOST:5672
loopback_users.guest = true
CONF
  echo '[].' >"$RABBITMQ_ENABLED_PLUGINS_FILE" # no plugins: no management listener
  setsid /usr/lib/rabbitmq/bin/rabbitmq-server </dev/null >"$PEERS_DIR/rabbitmq.out" 2>&1 &
  await_port 5672 RabbitMQ "$PEERS_DIR/rabbitmq.out"
  timeout 60 /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBIT_NODE" await_startup >&2 ||
    log "rabbitmqctl await_startup failed (see $RABBITMQ_LOG_BASE)"
fi

log "listening sockets of the peers (all should be on 127.0.0.1):"
ss -ltnp 2>/dev/null | grep -E ':(5672|25672|4369|4222|6379)\b' >&2 || true
log "ready: npx tsx bench/peers/work-queue.ts   (stop them with: bash bench/peers/stop.sh)"
