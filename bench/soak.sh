#!/usr/bin/env bash
# Soak test: builds the gateway, starts Postfix's smtp-sink as the backend
# and the gateway in front of it (memory greylist store, an unreachable DNS
# server, a temporary data_dir), sends N messages over C concurrent
# connections with the Go driver (bench/soak), samples the gateway's RSS
# (and go_goroutines from /metrics when the admin listener is available)
# every INTERVAL, prints a table, and exits non-zero when the RSS grew by
# more than MAX_GROWTH percent from 25% of the run to its end, or when
# more than MAX_FAIL percent of the messages did not get 250.
#
#   bench/soak.sh                 # 100000 messages
#   N=5000 bench/soak.sh          # a quick run
#   N=1000000 C=50 bench/soak.sh  # overnight
#
# Settings (environment): N (100000), C (20 connections), PER_CONN (10
# messages per connection), SIZE (2048 bytes), INTERVAL (5s), MAX_GROWTH
# (25 percent), MAX_FAIL (1 percent), KEEP=1 keeps the work directory.
# Needs Go and smtp-sink (Debian: postfix). Only loopback. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
C=${C:-20}
PER_CONN=${PER_CONN:-10}
SIZE=${SIZE:-2048}
INTERVAL=${INTERVAL:-5s}
MAX_GROWTH=${MAX_GROWTH:-25}
MAX_FAIL=${MAX_FAIL:-1}

sink_bin=$(command -v smtp-sink || true)
[ -z "$sink_bin" ] && [ -x /usr/sbin/smtp-sink ] && sink_bin=/usr/sbin/smtp-sink
if [ -z "$sink_bin" ]; then
  echo "soak: smtp-sink not found (Debian: apt-get install postfix)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mxgate-soak.XXXXXX")
sink_pid=
gw_pid=
drv_pid=

# Only what this script started, by PID.
cleanup() {
  local code=$?
  for pid in $drv_pid $gw_pid $sink_pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "${KEEP:-0}" = 1 ] || [ "$code" -ne 0 ]; then
    echo "soak: work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_port HOST PORT: until something accepts there (10 s).
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

echo "--- building"
go build -o "$work/gateway" ./cmd/gateway
go build -o "$work/soak" ./bench/soak

mapfile -t ports < <("$work/soak" -ports 3)
smtp_port=${ports[0]} sink_port=${ports[1]} admin_port=${ports[2]}

echo "--- smtp-sink on 127.0.0.1:$sink_port"
sink_args=()
[ "$(id -u)" = 0 ] && sink_args+=(-u nobody) # smtp-sink refuses to run as root
"$sink_bin" "${sink_args[@]}" -h sink.test "127.0.0.1:$sink_port" 256 >"$work/sink.log" 2>&1 &
sink_pid=$!
wait_port 127.0.0.1 "$sink_port" || { echo "soak: smtp-sink did not start:" >&2; cat "$work/sink.log" >&2; exit 1; }

mkdir -p "$work/data" "$work/spool"
write_config() { # $1: the admin section, or nothing
  cat >"$work/config.yaml" <<EOF
# written by bench/soak.sh
hostname: mx.soak.test
listen:
  - address: "127.0.0.1:$smtp_port"
domains: [dest.test]
backend:
  servers: ["127.0.0.1:$sink_port"]
limits:
  max_connections: 1000
  max_connections_per_ip: 1000
message:
  temp_dir: "$work/spool"
dns:
  # Nothing listens there: every lookup fails at once, as offline.
  servers: ["127.0.0.1:1"]
  attempts: 1
checks:
  greylist:
    store: memory
policy:
  # Every check and rule runs, but with DNS down the default rules would
  # tempfail everything (SPF temperror): shadow mode records what they
  # decided and delivers anyway, so the whole relay path is soaked.
  mode: shadow
data_dir: "$work/data"
verdict_log:
  path: "$work/verdicts.jsonl"
log:
  level: warn
$1
EOF
}
metrics_url=
write_config "admin:
  listen: \"127.0.0.1:$admin_port\""
if "$work/gateway" check-config --config "$work/config.yaml" >/dev/null 2>&1; then
  metrics_url="http://127.0.0.1:$admin_port/metrics"
else
  write_config ""
  "$work/gateway" check-config --config "$work/config.yaml" >/dev/null
  echo "(this gateway has no admin.listen: no goroutine counts)"
fi

echo "--- gateway on 127.0.0.1:$smtp_port"
"$work/gateway" serve --config "$work/config.yaml" >"$work/gateway.log" 2>&1 &
gw_pid=$!
wait_port 127.0.0.1 "$smtp_port" || { echo "soak: the gateway did not start:" >&2; cat "$work/gateway.log" >&2; exit 1; }

echo "--- sending"
status=0
# In the background, so that a signal to this script is handled at once
# (bash runs traps only between foreground commands).
"$work/soak" -addr "127.0.0.1:$smtp_port" -pid "$gw_pid" -metrics "$metrics_url" \
  -n "$N" -c "$C" -per-conn "$PER_CONN" -size "$SIZE" -every "$INTERVAL" \
  -max-growth "$MAX_GROWTH" -max-fail "$MAX_FAIL" &
drv_pid=$!
wait "$drv_pid" || status=$?
drv_pid=

echo "--- stopping the gateway"
kill -TERM "$gw_pid"
if wait "$gw_pid"; then
  echo "gateway exited cleanly"
else
  echo "soak: the gateway exited with status $? on SIGTERM" >&2
  status=1
fi
gw_pid=
if grep -q '"level":"ERROR"' "$work/gateway.log"; then
  echo "soak: the gateway logged errors:" >&2
  grep '"level":"ERROR"' "$work/gateway.log" | head -n 5 >&2
  status=1
fi
echo "verdict records: $(wc -l <"$work/verdicts.jsonl")"
exit "$status"
