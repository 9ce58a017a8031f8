#!/usr/bin/env bash
# Stops the servers that bench/peers/setup.sh started (RabbitMQ, NATS, Redis) and removes their
# data in $PEERS_DIR (default /tmp/zeromq-pirate-peers); `--keep` keeps the data. Stops only the
# processes named in its own pid files, never by name. Idempotent.
set -uo pipefail

PEERS_DIR=${PEERS_DIR:-/tmp/zeromq-pirate-peers}
RABBIT_NODE=${RABBIT_NODE:-pirate-bench@localhost}
keep=0
[[ ${1:-} == --keep ]] && keep=1

log() { printf 'peers: %s\n' "$*" >&2; }

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

# Stops the process in pid file $1 (TERM, then KILL after 30 s); $2 names it.
stop_pid() {
  local file=$1 name=$2 pid
  [[ -f $file ]] || return 0
  pid=$(tr -dc 0-9 <"$file")
  if alive "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do
      alive "$pid" || break
      sleep 0.5
    done
    if alive "$pid"; then
      log "$name ($pid) still runs after 30 s: SIGKILL"
      kill -KILL "$pid"
    fi
    log "$name ($pid) stopped"
  fi
  rm -f "$file"
}

# RabbitMQ: a clean stop through rabbitmqctl (bounded), then its pid file as a fallback.
if [[ -f $PEERS_DIR/rabbitmq.pid ]]; then
  pid=$(tr -dc 0-9 <"$PEERS_DIR/rabbitmq.pid")
  if alive "$pid"; then
    HOME="$PEERS_DIR/rabbitmq/home" ERL_EPMD_ADDRESS=127.0.0.1 \
      RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
      timeout 60 /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBIT_NODE" stop >&2 ||
      log "rabbitmqctl stop failed: stopping RabbitMQ by its pid"
  fi
  stop_pid "$PEERS_DIR/rabbitmq.pid" RabbitMQ
fi
# epmd was started by RabbitMQ; stop it once no Erlang node is registered with it any more.
if command -v epmd >/dev/null; then
  names=$(ERL_EPMD_ADDRESS=127.0.0.1 timeout 5 epmd -names 2>/dev/null || true)
  if [[ $names == "epmd: up"* && $names != *$'\nname '* ]]; then
    ERL_EPMD_ADDRESS=127.0.0.1 timeout 5 epmd -kill >/dev/null 2>&1 && log "epmd stopped"
  fi
fi

stop_pid "$PEERS_DIR/nats.pid" NATS
stop_pid "$PEERS_DIR/redis.pid" Redis

if ((keep == 0)) && [[ -d $PEERS_DIR ]]; then
  rm -rf "$PEERS_DIR"
  log "removed $PEERS_DIR"
fi
