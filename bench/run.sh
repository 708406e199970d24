#!/usr/bin/env bash
# The reproducible benchmark of mxgate against its ceiling and two peers
# (issue 8). One command, on a Debian 12 machine, as root:
#
#   bench/run.sh                       # the full matrix (about an hour)
#   QUICK=1 bench/run.sh               # smoke test: one cell, small counts
#   PEERS="ceiling mxgate" SIZES=4096 CONC="10 50" bench/run.sh
#
# It installs what is missing (apt: postfix with "No configuration" and a
# policy-rc.d that starts no daemon, redis-server, swaks, jq, curl,
# nodejs/npm; npm: Haraka@3.3.4 into $BENCH_CACHE/haraka), builds the
# gateway, bench/dnsd and bench/load, then runs everything else inside a
# private mount namespace whose /etc/resolv.conf says
# "nameserver $RESOLVER_IP" (bench/with-local-dns.sh), where bench/dnsd
# serves bench/zones on port 53: the gateway, Postfix (postscreen and
# dnsblog use the libc resolver) and Haraka (c-ares) all ask that one
# server, and nothing can ask the system's resolver.
#
# Systems, all on 127.0.0.1 (README.md has the details):
#   ceiling  smtp-source -> smtp-sink directly
#   mxgate   smtp-source -> mxgate (every check on, greylisting always,
#            default rules enforced) -> smtp-sink
#   postfix  smtp-source -> Postfix (postscreen + DNS lists, queue) ->
#            smtp-sink, timed until its queue is empty (end to end)
#   haraka   smtp-source -> Haraka 3.3.4 (dns-list, greylist on redis,
#            rcpt_to.in_host_list, smtp_forward) -> smtp-sink
# and, with bench/load, DKIM-signed messages: latency at c=10 and
# throughput at c=10 and 50, smtp-sink directly vs through mxgate, as fast
# as each answers and at a fixed offered rate (LAT_RATE, an open loop).
#
# Settings (environment):
#   PEERS="ceiling mxgate postfix haraka"   systems to measure
#   CONC="10 50 100"  SIZES="1024 4096 65536 1048576"  RUNS=3
#   MSGS=N            messages per run (default per size: 20000 up to 4 KiB,
#                     10000 up to 64 KiB, 1000 above; QUICK: 500/200/50)
#   QUICK=1           smoke test: CONC=10 SIZES=4096 RUNS=1, small counts
#   PROFILE=1         a CPU profile of mxgate under load, top in the report (0: skip); PROFILE_SECS=8
#   LATENCY=1         the bench/load section (0: skip it); LAT_MSGS=5000
#   LAT_RATE=1000     msg/s offered at the first LAT_CONC (0: no paced run)
#   GL_STORE=redis|bbolt   mxgate's greylist store (default redis, as Haraka)
#   HARAKA_NODES=cpus       Haraka worker processes ("" = one process)
#   OUT=bench/results/DATE-HOST.md          the report (also printed)
#   KEEP=1            keep the temp dir (logs, configs, verdict log)
#   INSTALL=0         never run apt-get/npm: fail if something is missing
#   SEALED=1          also a new network namespace with only loopback
#   BENCH_CACHE=/var/cache/mxgate-bench     Haraka install and dhparams
#   PAUSE=1           seconds between runs
#   ports: SINK_PORT=2625 MXGATE_PORT=2624 POSTFIX_PORT=2626
#          HARAKA_PORT=2627 ADMIN_PORT=9625 REDIS_PORT=6390
#          RESOLVER_IP=127.0.0.53 (port 53)
#
# Only loopback addresses are used. Every process it starts is recorded by
# PID and killed by that PID on exit (EXIT trap); the temp dir is deleted
# unless KEEP=1. It exits non-zero when a sanity check or a run failed.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
cd "$ROOT"

# ---------------------------------------------------------------- settings
QUICK=${QUICK:-0}
PROFILE=${PROFILE:-1}
PROFILE_SECS=${PROFILE_SECS:-8}
if [ "$QUICK" = 1 ]; then
  CONC=${CONC:-10}
  SIZES=${SIZES:-4096}
  RUNS=${RUNS:-1}
  LAT_MSGS=${LAT_MSGS:-500}
fi
PEERS=${PEERS:-ceiling mxgate postfix haraka}
CONC=${CONC:-10 50 100}
SIZES=${SIZES:-1024 4096 65536 1048576}
RUNS=${RUNS:-3}
MSGS=${MSGS:-}
LATENCY=${LATENCY:-1}
LAT_MSGS=${LAT_MSGS:-5000}
LAT_CONC=${LAT_CONC:-10 50}
LAT_RATE=${LAT_RATE:-1000}
GL_STORE=${GL_STORE:-redis}
HARAKA_NODES=${HARAKA_NODES-cpus}
BENCH_CACHE=${BENCH_CACHE:-/var/cache/mxgate-bench}
HARAKA_HOME=$BENCH_CACHE/haraka
HARAKA_VERSION=3.3.4
INSTALL=${INSTALL:-1}
KEEP=${KEEP:-0}
SEALED=${SEALED:-0}
PAUSE=${PAUSE:-1}
RSS_EVERY=${RSS_EVERY:-0.15}
RUN_TIMEOUT=${RUN_TIMEOUT:-1200}
GL_BLACK=${GL_BLACK:-2}
SINK_PORT=${SINK_PORT:-2625}
MXGATE_PORT=${MXGATE_PORT:-2624}
POSTFIX_PORT=${POSTFIX_PORT:-2626}
HARAKA_PORT=${HARAKA_PORT:-2627}
ADMIN_PORT=${ADMIN_PORT:-9625}
REDIS_PORT=${REDIS_PORT:-6390}
RESOLVER_IP=${RESOLVER_IP:-127.0.0.53}
OUT=${OUT:-$ROOT/bench/results/$(date +%Y-%m-%d)-$(hostname -s).md}
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac

FROM=sender@example.test
TO=user@dest.test
HELO=client.example.test
DKIM_KEY=$BENCH_DIR/zones/bench-dkim.key
LISTED_IP=127.0.0.10 # listed in bl.test, not in wl.test
GREY_IP=127.0.1.1    # outside the greylist allow entry 127.0.0.0/24

export QUICK PROFILE PROFILE_SECS PEERS CONC SIZES RUNS MSGS LATENCY LAT_MSGS LAT_CONC LAT_RATE GL_STORE HARAKA_NODES \
  BENCH_CACHE INSTALL KEEP SEALED PAUSE RSS_EVERY RUN_TIMEOUT GL_BLACK SINK_PORT \
  MXGATE_PORT POSTFIX_PORT HARAKA_PORT ADMIN_PORT REDIS_PORT RESOLVER_IP OUT

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "FATAL: $*"
  exit 1
}
has() { case " $PEERS " in *" $1 "*) return 0 ;; esac; return 1; }

check_settings() {
  local p n
  for p in $PEERS; do
    case $p in ceiling | mxgate | postfix | haraka) ;; *) die "PEERS: unknown system '$p'" ;; esac
  done
  for n in $CONC $SIZES $RUNS $MSGS $LAT_MSGS $LAT_CONC $LAT_RATE $SINK_PORT $MXGATE_PORT $POSTFIX_PORT \
    $HARAKA_PORT $ADMIN_PORT $REDIS_PORT; do
    case $n in '' | *[!0-9]*) die "not a positive number: '$n'" ;; esac
  done
  case $RESOLVER_IP in 127.*) ;; *) die "RESOLVER_IP=$RESOLVER_IP: must be in 127.0.0.0/8" ;; esac
  case $GL_STORE in redis | bbolt) ;; *) die "GL_STORE=$GL_STORE: want redis or bbolt" ;; esac
  [ "$(id -u)" = 0 ] || die "run as root (apt-get, unshare --mount, the Postfix master, setpriv for redis)"
}

# ================================================================ phase 1
# Outside the private namespace (apt-get and npm need the real resolver):
# install what is missing, build, then re-exec into the namespace.

install_deps() {
  local missing=() c
  for c in /usr/sbin/smtp-sink /usr/sbin/smtp-source /usr/sbin/postfix /usr/lib/postfix/sbin/master \
    /usr/bin/redis-server /usr/bin/redis-cli /usr/bin/swaks /usr/bin/jq /usr/bin/curl \
    /usr/bin/openssl /usr/bin/unshare /usr/bin/setpriv /usr/bin/script /usr/bin/getent /usr/bin/ss /usr/bin/timeout \
    /usr/bin/ps; do
    [ -x "$c" ] || missing+=("$c")
  done
  if has haraka; then
    command -v node >/dev/null || missing+=(node)
    if [ ! -x "$HARAKA_HOME/node_modules/Haraka/bin/haraka" ]; then
      command -v npm >/dev/null || missing+=(npm)
    fi
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$INSTALL" = 1 ] || die "missing: ${missing[*]} (INSTALL=0)"
    log "installing Debian packages (missing: ${missing[*]})"
    local made_rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      # invoke-rc.d then refuses to start any daemon the packages bring
      printf '#!/bin/sh\n# bench/run.sh: never start daemons on package install\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      made_rc=1
    fi
    # "No configuration": no /etc/postfix/main.cf, no system Postfix on :25
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    local pkgs=(postfix redis-server redis-tools swaks jq curl openssl util-linux bsdutils iproute2 coreutils
      procps libnet-ssleay-perl libio-socket-ssl-perl)
    if has haraka; then
      command -v node >/dev/null || pkgs+=(nodejs)
      if [ ! -x "$HARAKA_HOME/node_modules/Haraka/bin/haraka" ]; then
        command -v npm >/dev/null || pkgs+=(npm)
      fi
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
    if [ "$made_rc" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  fi
  if has haraka; then
    if [ ! -x "$HARAKA_HOME/node_modules/Haraka/bin/haraka" ]; then
      [ "$INSTALL" = 1 ] || die "Haraka is not installed in $HARAKA_HOME (INSTALL=0)"
      log "installing Haraka@$HARAKA_VERSION into $HARAKA_HOME (npm)"
      mkdir -p "$HARAKA_HOME"
      (cd "$HARAKA_HOME" && { [ -f package.json ] || npm init -y >/dev/null; } &&
        npm install --no-audit --no-fund "Haraka@$HARAKA_VERSION")
    fi
    local v
    v=$(node -p "require('$HARAKA_HOME/node_modules/Haraka/package.json').version")
    [ "$v" = "$HARAKA_VERSION" ] || die "$HARAKA_HOME has Haraka $v, want $HARAKA_VERSION (remove it to reinstall)"
    # Haraka 3.3.4 declares node >= 20; Debian 12's own nodejs is 18
    v=$(node -p 'process.versions.node.split(".")[0]')
    [ "$v" -ge 20 ] || log "WARNING: node $(node --version): Haraka $HARAKA_VERSION asks for node >= 20 (measured on 20)"
    if [ ! -s "$HARAKA_HOME/dhparams.pem" ]; then
      # Haraka's tls plugin otherwise forks "openssl dhparam 2048" at every start
      log "generating dhparams for Haraka's tls plugin (once)"
      openssl dhparam -dsaparam -out "$HARAKA_HOME/dhparams.pem.tmp" 2048 2>/dev/null
      mv "$HARAKA_HOME/dhparams.pem.tmp" "$HARAKA_HOME/dhparams.pem"
    fi
  fi
}

build() {
  command -v go >/dev/null || die "go not found: install Go 1.26 (https://go.dev/dl/)"
  mkdir -p "$W/bin"
  log "building the gateway and bench/dnsd"
  go build -o "$W/bin/gateway" ./cmd/gateway
  go build -o "$W/bin/dnsd" ./bench/dnsd
  # bench/load: the DKIM-signed sanity check and the latency/DKIM section
  if has mxgate; then
    if [ -f bench/load/main.go ]; then
      log "building bench/load"
      go build -o "$W/bin/load" ./bench/load ||
        log "WARNING: bench/load does not build: no DKIM sanity check, no latency/DKIM section"
    else
      log "WARNING: bench/load/main.go does not exist: no DKIM sanity check, no latency/DKIM section"
    fi
  fi
}

if [ -z "${BENCH_PHASE:-}" ]; then
  check_settings
  W=$(mktemp -d /tmp/mxgate-bench.XXXXXX)
  # until the exec below, this shell owns the temp dir
  trap 'rm -rf "$W"' EXIT
  trap 'exit 130' INT TERM
  install_deps
  build
  trap - EXIT
  log "entering a private mount namespace: /etc/resolv.conf -> nameserver $RESOLVER_IP"
  BENCH_PHASE=2 BENCH_WORK=$W exec "$BENCH_DIR/with-local-dns.sh" bash "$BENCH_DIR/run.sh"
fi

# ================================================================ phase 2
# Inside the private namespace. Everything below runs on loopback.
W=$BENCH_WORK
mkdir -p "$W/logs"
chmod 755 "$W"
PIDS=()
PID_NAMES=()
SAMPLER_PID=
CUR_PID=
FAILURES=()

fail() { # a failed check or run: reported, and the exit status is 1
  log "FAIL: $*"
  FAILURES+=("$*")
}

bg_start() { # bg_start NAME CMD... : start CMD in the background, record its PID
  local name=$1
  shift
  "$@" >"$W/logs/$name.log" 2>&1 &
  PIDS+=("$!")
  PID_NAMES+=("$name")
  log "started $name (pid $!)"
}

# stop_pid PID: SIGTERM, up to 5 s, then SIGKILL; and the same for the
# children it had (Postfix's and Haraka's workers), which are ours too.
stop_pid() {
  local p=$1 kids c
  kill -0 "$p" 2>/dev/null || return 0
  kids=$(ps -o pid= --ppid "$p" 2>/dev/null || true)
  kill "$p" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  wait "$p" 2>/dev/null || true
  for c in $kids; do
    for _ in $(seq 20); do
      kill -0 "$c" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$c" 2>/dev/null; then
      log "child $c of $p still alive: SIGKILL"
      kill -9 "$c" 2>/dev/null || true
    fi
  done
}

cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  log "stopping what this script started: ${PID_NAMES[*]}"
  if [ -n "$CUR_PID" ]; then stop_pid "$CUR_PID"; fi
  if [ -n "$SAMPLER_PID" ]; then stop_pid "$SAMPLER_PID"; fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${PIDS[$i]}"
  done
  if [ "$KEEP" = 1 ]; then
    log "temp dir kept: $W"
  else
    rm -rf "$W"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_fg OUT ERR CMD...: run a load generator in the background, its output
# to the files OUT and ERR, and wait for it, so a signal to this script is
# handled at once (bash runs traps only between foreground commands);
# cleanup stops it by its PID.
run_fg() {
  local rc=0 out=$1 err=$2
  shift 2
  "$@" >"$out" 2>"$err" &
  CUR_PID=$!
  wait "$CUR_PID" || rc=$?
  CUR_PID=
  return "$rc"
}

wait_tcp() { # wait_tcp HOST PORT [SECONDS]
  local i
  for ((i = 0; i < ${3:-15} * 10; i++)); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

port_free() { # port_free IP PORT: nothing listens there (TCP or UDP)
  [ -z "$(ss -Htuln "src $1:$2" 2>/dev/null)" ]
}

now_ns() { date +%s%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN{printf "%.0f", n/((b-a)/1e9)}'; }
median() { sort -g | awk '{a[NR]=$1} END{if(NR==0){print "-"; exit} if(NR%2){print a[(NR+1)/2]} else {printf "%.0f\n",(a[NR/2]+a[NR/2+1])/2}}'; }
median_f() { sort -g | awk '{a[NR]=$1} END{if(NR==0){print "-"; exit} if(NR%2){print a[(NR+1)/2]} else {printf "%.2f\n",(a[NR/2]+a[NR/2+1])/2}}'; }

msgs_for_size() {
  if [ -n "$MSGS" ]; then
    echo "$MSGS"
    return
  fi
  local l=$1
  if [ "$QUICK" = 1 ]; then
    if [ "$l" -le 4096 ]; then echo 500; elif [ "$l" -le 65536 ]; then echo 200; else echo 50; fi
  else
    if [ "$l" -le 4096 ]; then echo 20000; elif [ "$l" -le 65536 ]; then echo 10000; else echo 1000; fi
  fi
}

# ------------------------------------------------------------ the services
make_cert() {
  mkdir -p "$W/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=gw.dest.test" \
    -addext "subjectAltName=DNS:gw.dest.test" -keyout "$W/tls/key.pem" -out "$W/tls/cert.pem" 2>/dev/null
  chmod 755 "$W/tls"
  chmod 644 "$W/tls/cert.pem" "$W/tls/key.pem"
}

dns_up() {
  bg_start dnsd "$W/bin/dnsd" -zones "$BENCH_DIR/zones" -addr "$RESOLVER_IP:53"
  wait_tcp "$RESOLVER_IP" 53 || die "bench/dnsd did not start: $(cat "$W/logs/dnsd.log")"
  # Through the libc resolver, i.e. the private resolv.conf, as Postfix asks.
  local a
  a=$(getent hosts client.example.test | awk 'NR==1{print $1}') || true
  [ "$a" = 127.0.0.1 ] || die "client.example.test does not resolve to 127.0.0.1 through $RESOLVER_IP (got '$a')"
  if getent hosts mxgate-bench-probe.example.com >/dev/null; then
    die "a name outside the benchmark zones resolved: the private resolv.conf is not in force"
  fi
}

sink_up() {
  # -u nobody: smtp-sink refuses to run as root without it. -m: connections at once.
  bg_start smtp-sink /usr/sbin/smtp-sink -u nobody -4 -m 1024 "127.0.0.1:$SINK_PORT" 1024
  wait_tcp 127.0.0.1 "$SINK_PORT" || die "smtp-sink did not start: $(cat "$W/logs/smtp-sink.log")"
}

redis_up() {
  mkdir -p "$W/redis"
  chown redis: "$W/redis"
  # no persistence, loopback only, in the foreground (its PID is ours)
  bg_start redis setpriv --reuid=redis --regid=redis --init-groups redis-server --port "$REDIS_PORT" \
    --bind 127.0.0.1 --save "" --appendonly no --daemonize no --protected-mode yes --dir "$W/redis" --logfile ""
  for _ in $(seq 50); do
    if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "redis did not start: $(tail -5 "$W/logs/redis.log")"
}

MX=$W/mxgate
metrics() { curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics"; }
# metric_sum NAME FILTER: sum of the series of NAME whose labels match the regex FILTER
metric_sum() {
  awk -v name="$1" -v f="$2" '
    $1 ~ "^"name"({|$)" && $1 ~ f { s += $2 } END { printf "%.0f\n", s }'
}

mxgate_config() {
  local store
  if [ "$GL_STORE" = redis ]; then store="redis://127.0.0.1:$REDIS_PORT/12"; else store="bbolt:greylist.db"; fi
  mkdir -p "$MX/data" "$MX/spool"
  cat >"$MX/config.yaml" <<EOF
# Written by bench/run.sh: mxgate under test, every check on.
hostname: gw.dest.test
listen:
  - address: "127.0.0.1:$MXGATE_PORT"
domains: [dest.test]
backend:
  servers: ["127.0.0.1:$SINK_PORT"]
  pool:
    # as many idle backend connections as the largest CONC keeps (default
    # 16: the pool would close and redial most of them under 50 sessions)
    max_idle: 128
# STARTTLS offered, as Postfix and Haraka offer it (smtp-source does not use it)
tls:
  cert: "$W/tls/cert.pem"
  key: "$W/tls/key.pem"
admin:
  listen: "127.0.0.1:$ADMIN_PORT"
  pprof: true # PROFILE=1 takes a CPU profile under load
limits:
  # the benchmark client is one address, 127.0.0.1, with up to 100+ sessions
  max_connections: 2000
  max_connections_per_ip: 2000
message:
  temp_dir: "$MX/spool"
dns:
  # bench/dnsd, the same server Postfix and Haraka ask (port 53)
  servers: ["$RESOLVER_IP:53"]
checks:
  dnsbl:
    zones:
      - zone: bl.test
        weight: 10
      - zone: wl.test
        weight: -5
    health_interval: 5m
  fcrdns:
    enabled: true
  helo:
    enabled: true
  spf:
    enabled: true
  dkim:
    enabled: true
  dmarc:
    enabled: true
  greylist:
    enabled: true
    # every transaction; 127.0.0.0/24 is allowed beforehand (gateway greylist allow)
    when: always
    store: "$store"
  ratelimit:
    connections:
      limit: 0
    messages:
      limit: 0
    recipients:
      limit: 0
policy:
  mode: enforce
  default_rules: true
data_dir: "$MX/data"
verdict_log:
  path: "$MX/verdicts.jsonl"
log:
  level: warn
EOF
}

mxgate_up() {
  mxgate_config
  "$W/bin/gateway" check-config --config "$MX/config.yaml" >&2 || die "mxgate config does not check"
  # The benchmark client is allowed beforehand, as a client that passed
  # greylisting once is; 127.0.0.0/8 is refused (more than 256 /24s).
  "$W/bin/gateway" greylist allow --config "$MX/config.yaml" --for 24h 127.0.0.0/24 >&2 ||
    die "gateway greylist allow failed"
  bg_start mxgate "$W/bin/gateway" serve --config "$MX/config.yaml"
  MXGATE_PID=${PIDS[-1]}
  wait_tcp 127.0.0.1 "$MXGATE_PORT" || die "mxgate did not start: $(tail -20 "$W/logs/mxgate.log")"
  for _ in $(seq 50); do
    if curl -fsS --max-time 2 "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  curl -fsS --max-time 2 "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null || die "mxgate /readyz is not ok"
  # A DNS list that fails its RFC 5782 probe is skipped silently: insist.
  local z ok
  for z in bl.test wl.test; do
    ok=0
    for _ in $(seq 50); do
      if [ "$(metrics | metric_sum gateway_dnsbl_zone_healthy "zone=\"$z\"")" = 1 ]; then
        ok=1
        break
      fi
      sleep 0.2
    done
    [ "$ok" = 1 ] || die "mxgate: DNS list $z is not healthy (gateway_dnsbl_zone_healthy)"
  done
}

PF=$W/postfix
pf_queue_empty() {
  [ -z "$(find "$PF/queue/maildrop" "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" \
    -type f -print -quit 2>/dev/null)" ]
}
pf_drain() { # pf_drain SECONDS
  local i
  for ((i = 0; i < $1 * 20; i++)); do
    pf_queue_empty && return 0
    sleep 0.05
  done
  return 1
}
postfix_up() {
  mkdir -p "$PF/etc" "$PF/data" "$PF/queue"
  chmod 755 "$PF" "$PF/queue"
  chown postfix: "$PF/data" # master's lock file lives there
  local f
  for f in main.cf master.cf; do
    sed -e "s|@RUN@|$PF|g" -e "s|@QUEUE@|$PF/queue|g" -e "s|@PORT@|$POSTFIX_PORT|g" \
      -e "s|@SINK_PORT@|$SINK_PORT|g" -e "s|@TLS@|$W/tls|g" \
      -e "s|@DNSBL_SITES@|bl.test*2, wl.test*-5|g" -e "s|@GREET_WAIT@|6s|g" \
      "$BENCH_DIR/peers/postfix/$f.in" >"$PF/etc/$f"
  done
  # creates the queue tree with the right owners; postfix prints errors only to a tty
  script -qc "postfix -c $PF/etc check" /dev/null >&2 || true
  # master in the foreground: its PID is ours, SIGTERM stops its children
  bg_start postfix /usr/lib/postfix/sbin/master -c "$PF/etc" -s
  wait_tcp 127.0.0.1 "$POSTFIX_PORT" || die "Postfix did not start: $(tail -20 "$PF/maillog" 2>/dev/null)"
}

HK=$W/haraka
haraka_up() {
  mkdir -p "$HK/config" "$HK/plugins"
  cp "$BENCH_DIR"/peers/haraka/plugins/*.js "$HK/plugins/"
  local f nodes_line=
  [ -n "$HARAKA_NODES" ] && nodes_line="nodes=$HARAKA_NODES"
  for f in "$BENCH_DIR"/peers/haraka/config/*; do
    case $f in
      *.in)
        sed -e "s|@PORT@|$HARAKA_PORT|g" -e "s|@SINK_PORT@|$SINK_PORT|g" \
          -e "s|@REDIS_PORT@|$REDIS_PORT|g" -e "s|@NODES_LINE@|$nodes_line|g" \
          -e "s|@GL_BLACK@|$GL_BLACK|g" "$f" >"$HK/config/$(basename "${f%.in}")"
        ;;
      *) cp "$f" "$HK/config/" ;;
    esac
  done
  # Haraka 3.3.4 crashes on the first DENY if connection.ini lacks [uuid]: use the shipped one
  cp "$HARAKA_HOME/node_modules/Haraka/config/connection.ini" "$HK/config/connection.ini"
  cp "$HARAKA_HOME/dhparams.pem" "$HK/config/dhparams.pem"
  cp "$W/tls/cert.pem" "$HK/config/tls_cert.pem"
  cp "$W/tls/key.pem" "$HK/config/tls_key.pem"
  bg_start haraka node "$HARAKA_HOME/node_modules/Haraka/bin/haraka" -c "$HK"
  wait_tcp 127.0.0.1 "$HARAKA_PORT" 60 || die "Haraka did not start: $(tail -20 "$W/logs/haraka.log")"
}

# ---------------------------------------------------------- sanity checks
# swaks_rcpt PORT SRC_IP: one transaction up to RCPT from SRC_IP; prints the transcript
swaks_rcpt() {
  swaks --server 127.0.0.1 --port "$1" --local-interface "$2" --helo "$HELO" \
    --from "$FROM" --to "$TO" --quit-after RCPT --timeout 30 2>&1 || true
}
swaks_full() {
  swaks --server 127.0.0.1 --port "$1" --local-interface "$2" --helo "$HELO" \
    --from "$FROM" --to "$TO" --timeout 30 2>&1 || true
}

SANITY=()
sane() {
  SANITY+=("$*")
  log "ok: $*"
}

# The verdict records of mxgate since line $1 of the verdict log.
verdicts_since() { tail -n +"$(($1 + 1))" "$MX/verdicts.jsonl"; }
verdict_lines() { if [ -f "$MX/verdicts.jsonl" ]; then wc -l <"$MX/verdicts.jsonl"; else echo 0; fi; }

check_mxgate() {
  log "sanity: mxgate"
  local n0 out rec bad
  n0=$(verdict_lines)
  # 1. Clean mail, DKIM-signed when bench/load exists: 250, and every check ran and passed.
  if [ -x "$W/bin/load" ]; then
    out=$("$W/bin/load" -addr "127.0.0.1:$MXGATE_PORT" -c 1 -n 3 -warmup 0 -size 2048 \
      -from "$FROM" -to "$TO" -helo "$HELO" -dkim-key "$DKIM_KEY" -dkim-domain example.test \
      -dkim-selector bench -json 2>"$W/logs/load-sanity.err") || true
    [ "$(jq -r .ok <<<"$out" 2>/dev/null)" = 3 ] ||
      die "mxgate did not accept 3 DKIM-signed clean messages: $out $(cat "$W/logs/load-sanity.err")"
  else
    out=$(/usr/sbin/smtp-source -4 -s 1 -m 3 -l 2048 -M "$HELO" -f "$FROM" -t "$TO" "127.0.0.1:$MXGATE_PORT" 2>&1) ||
      die "mxgate did not accept 3 clean messages from smtp-source: $out"
  fi
  sleep 0.5
  verdicts_since "$n0" >"$W/sanity-clean.jsonl"
  [ "$(wc -l <"$W/sanity-clean.jsonl")" -ge 3 ] || die "mxgate wrote no verdict records for the clean messages"
  cp "$W/sanity-clean.jsonl" "$W/logs/"
  local want_dkim=pass what="DKIM-signed"
  [ -x "$W/bin/load" ] || { want_dkim=none; what=unsigned; }
  # Every record: accepted and relayed, and each check with the expected result.
  bad=$(jq -c --arg dkim "$want_dkim" '
    def res($n): ([.checks[]? | select(.name == $n) | .result] | first) // "MISSING";
    select(.mail_from != null)
    | {action, reason, reply: .reply.code, relay: .relay.code,
       dnsbl: res("dnsbl"), fcrdns: res("fcrdns"), helo: res("helo"), spf: res("spf"),
       dkim: res("dkim"), dmarc: res("dmarc"), greylist: (.greylist.state // "MISSING")}
    | select(.action != "accept" or .reply != 250 or .relay != 250
             or .dnsbl == "MISSING" or .dnsbl == "listed" or .fcrdns != "pass" or .helo == "MISSING"
             or .spf != "pass" or .dkim != $dkim or .dmarc != "pass" or .greylist != "allowed")' \
    "$W/sanity-clean.jsonl")
  if [ -n "$bad" ]; then
    log "verdict records of the clean messages:"
    jq -c '{action, reason, reply, checks, rules, greylist}' "$W/sanity-clean.jsonl" >&2
    die "mxgate: a clean message was not accepted with every check passing: $bad"
  fi
  rec=$(jq -c 'select(.mail_from != null) | {action, reply: .reply.code, score,
      checks: [.checks[] | "\(.name)=\(.result)"], greylist: .greylist.state}' "$W/sanity-clean.jsonl" | tail -1)
  sane "mxgate: clean $what mail accepted: $rec"
  [ "$want_dkim" = pass ] || fail "bench/load missing: DKIM pass not verified before measuring (DKIM was 'none')"

  # 2. A listed client (bl.test) is refused at RCPT.
  n0=$(verdict_lines)
  out=$(swaks_rcpt "$MXGATE_PORT" "$LISTED_IP")
  grep -q '^<\*\* *554 5\.7\.1' <<<"$out" || {
    echo "$out" >&2
    die "mxgate: listed client $LISTED_IP was not refused with 554 5.7.1"
  }
  sleep 0.3
  rec=$(verdicts_since "$n0" | jq -c 'select(.mail_from != null) | {action, rule: ([.rules[]? | select(.action) | .name] | first), reply: .reply.text}' | tail -1)
  sane "mxgate: DNSBL-listed client $LISTED_IP refused: $rec"

  # 3. A client outside the allow entry is greylisted (when: always).
  n0=$(verdict_lines)
  out=$(swaks_rcpt "$MXGATE_PORT" "$GREY_IP")
  grep -q '^<\*\* *451' <<<"$out" || {
    echo "$out" >&2
    die "mxgate: client $GREY_IP (not allowed) was not greylisted with 451"
  }
  sleep 0.3
  rec=$(verdicts_since "$n0" | jq -c 'select(.mail_from != null) | {action, reason, greylist: .greylist.state, reply: .reply.code}' | tail -1)
  sane "mxgate: unknown client $GREY_IP greylisted: $rec"
}

check_postfix() {
  log "sanity: Postfix (postscreen waits 6 s for a new client)"
  local out listed
  # the listed client and the warm-up of 127.0.0.1 (postscreen caches its PASS) side by side
  swaks_rcpt "$POSTFIX_PORT" "$LISTED_IP" >"$W/logs/pf-listed.txt" &
  listed=$!
  out=$(/usr/sbin/smtp-source -4 -s 1 -m 1 -l 1024 -M "$HELO" -f "$FROM" -t "$TO" "127.0.0.1:$POSTFIX_PORT" 2>&1) ||
    die "Postfix did not accept the warm-up message: $out"
  wait "$listed" || true
  grep -q '^<\*\* *550 5\.7\.1.*blocked using bl\.test' "$W/logs/pf-listed.txt" || {
    cat "$W/logs/pf-listed.txt" >&2
    die "Postfix: listed client $LISTED_IP was not refused by postscreen's DNSBL"
  }
  pf_drain 30 || die "Postfix did not deliver the warm-up message"
  grep -q 'status=sent' "$PF/maillog" || die "Postfix: no status=sent in its log"
  sane "Postfix: $LISTED_IP refused ($(grep -m1 -o 'blocked using bl.test' "$W/logs/pf-listed.txt")), 127.0.0.1 warmed up: $(grep -c 'PASS NEW' "$PF/maillog") PASS NEW, relayed (status=sent)"
}

check_haraka() {
  log "sanity: Haraka"
  local out
  out=$(swaks_rcpt "$HARAKA_PORT" "$LISTED_IP")
  grep -Eq '^<\*\* *5[0-9][0-9] .*bl\.test' <<<"$out" || {
    echo "$out" >&2
    die "Haraka: listed client $LISTED_IP was not refused by dns-list"
  }
  # greylist: the first try of 127.0.0.1 is deferred, the retry after the
  # black period passes and white-lists 127.0.0.1 for the measurement
  out=$(swaks_full "$HARAKA_PORT" 127.0.0.1)
  grep -q '^<\*\* *451' <<<"$out" || {
    echo "$out" >&2
    die "Haraka: the first message from 127.0.0.1 was not greylisted (is the shim plugin loaded?)"
  }
  sleep $((GL_BLACK + 1))
  out=$(swaks_full "$HARAKA_PORT" 127.0.0.1)
  grep -q '^<- *250 .*' <<<"$(grep -A1 -- '-> \.' <<<"$out")" || grep -q '^<- *250 2.0.0' <<<"$out" || {
    echo "$out" >&2
    die "Haraka: the retry from 127.0.0.1 was not accepted"
  }
  local keys
  keys=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n 11 --scan | tr '\n' ' ')
  case $keys in *white:127.0.0.1*) ;; *) die "Haraka: 127.0.0.1 is not white-listed in redis (keys: $keys)" ;; esac
  sane "Haraka: $LISTED_IP refused by dns-list, 127.0.0.1 greylisted then white-listed (redis: $keys)"
}

# --------------------------------------------------------------- measuring
RAW=$W/raw.tsv # size conc run system msgs rate accept_rate status
printf 'size\tconc\trun\tsystem\tmsgs\tmsgs_per_s\taccept_msgs_per_s\tstatus\n' >"$RAW"
RSS=$W/rss.tsv # size conc run peak_kib
: >"$RSS"

port_of() {
  case $1 in
    ceiling) echo "$SINK_PORT" ;;
    mxgate) echo "$MXGATE_PORT" ;;
    postfix) echo "$POSTFIX_PORT" ;;
    haraka) echo "$HARAKA_PORT" ;;
  esac
}

rss_start() { # sample the gateway's VmRSS; the peak goes to $W/rss.peak
  local pid=$1 out=$W/rss.peak
  echo 0 >"$out"
  (
    peak=0
    while kill -0 "$pid" 2>/dev/null; do
      while read -r k v _; do
        if [ "$k" = VmRSS: ]; then
          if [ "$v" -gt "$peak" ]; then
            peak=$v
            echo "$peak" >"$out"
          fi
          break
        fi
      done <"/proc/$pid/status" || true
      sleep "$RSS_EVERY"
    done
  ) &
  SAMPLER_PID=$!
}
rss_stop() {
  [ -n "$SAMPLER_PID" ] && stop_pid "$SAMPLER_PID"
  SAMPLER_PID=
  cat "$W/rss.peak"
}

tx_counts() { # accepted and not-accepted transactions of mxgate so far
  local m
  m=$(metrics)
  printf '%s %s\n' "$(metric_sum gateway_transactions_total 'action="accept"' <<<"$m")" \
    "$(metric_sum gateway_transactions_total 'action="(reject|tempfail|greylist|drop|tag)"' <<<"$m")"
}

# one_run SYSTEM SIZE CONC MSGS RUN: one smtp-source run; appends to $RAW
one_run() {
  local sys=$1 l=$2 s=$3 m=$4 r=$5 port t0 t1 t2 status=ok acc e2e before after peak
  port=$(port_of "$sys")
  if [ "$sys" = postfix ]; then
    # Untimed: postscreen's PASS for 127.0.0.1 expires with the DNSBL answer's
    # TTL (5 min); when it has, this one message takes the 6 s pre-greet
    # wait instead of every session of the timed run. Otherwise it is instant.
    /usr/sbin/smtp-source -4 -s 1 -m 1 -l 1024 -M "$HELO" -f "$FROM" -t "$TO" "127.0.0.1:$port" >/dev/null 2>&1 ||
      fail "postfix: warm-up message before size=$l conc=$s run=$r refused"
    pf_drain 60 || true
  fi
  if [ "$sys" = mxgate ]; then
    read -r -a before <<<"$(tx_counts)"
    rss_start "$MXGATE_PID"
  fi
  t0=$(now_ns)
  if ! run_fg "$W/logs/src.out" "$W/logs/src.err" timeout "$RUN_TIMEOUT" \
    /usr/sbin/smtp-source -4 -s "$s" -m "$m" -l "$l" -M "$HELO" -f "$FROM" -t "$TO" "127.0.0.1:$port"; then
    status=fail
    fail "$sys size=$l conc=$s run=$r: smtp-source: $(tail -c 300 "$W/logs/src.err" | tr '\n' ' ')"
  fi
  t1=$(now_ns)
  acc=$(rate "$m" "$t0" "$t1")
  e2e=$acc
  if [ "$sys" = postfix ]; then
    # end to end: until the queue is empty, i.e. everything reached smtp-sink
    pf_drain "$RUN_TIMEOUT" || {
      status=fail
      fail "postfix size=$l conc=$s run=$r: the queue did not drain"
    }
    t2=$(now_ns)
    e2e=$(rate "$m" "$t0" "$t2")
  fi
  if [ "$sys" = mxgate ]; then
    peak=$(rss_stop)
    printf '%s\t%s\t%s\t%s\n' "$l" "$s" "$r" "$peak" >>"$RSS"
    read -r -a after <<<"$(tx_counts)"
    if [ $((after[0] - before[0])) -ne "$m" ] || [ $((after[1] - before[1])) -ne 0 ]; then
      status=fail
      fail "mxgate size=$l conc=$s run=$r: $((after[0] - before[0])) accepted, $((after[1] - before[1])) not accepted, of $m"
    fi
    # the verdict log grows by ~2 KB a message: keep only a sample (opened O_APPEND, so truncating is safe)
    if [ "$(verdict_lines)" -gt 0 ]; then
      head -3 "$MX/verdicts.jsonl" >>"$W/logs/verdicts-sample.jsonl"
      grep -v '"action":"accept"' "$MX/verdicts.jsonl" | head -20 >>"$W/logs/verdicts-not-accepted.jsonl" || true
      : >"$MX/verdicts.jsonl"
    fi
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$l" "$s" "$r" "$sys" "$m" "$e2e" "$acc" "$status" >>"$RAW"
  log "  $sys size=$l conc=$s run=$r: $e2e msg/s$([ "$sys" = postfix ] && echo " end to end ($acc accepted)")${peak:+, peak RSS $((peak / 1024)) MiB} [$status]"
}

SYSTEMS=()
for sys in ceiling mxgate postfix haraka; do has "$sys" && SYSTEMS+=("$sys"); done
LOADS=$W/load.tsv # size conc before after
: >"$LOADS"

matrix() {
  local l s r m i k sys order
  for l in $SIZES; do
    m=$(msgs_for_size "$l")
    for s in $CONC; do
      local lb
      lb=$(loadavg)
      log "cell size=$l conc=$s msgs=$m (load $lb)"
      for ((r = 1; r <= RUNS; r++)); do
        # rotate the order from run to run, so no system always follows Postfix's load
        order=()
        for ((i = 0; i < ${#SYSTEMS[@]}; i++)); do
          k=$(((i + r - 1) % ${#SYSTEMS[@]}))
          order+=("${SYSTEMS[$k]}")
        done
        for sys in "${order[@]}"; do
          one_run "$sys" "$l" "$s" "$m" "$r"
          sleep "$PAUSE"
        done
      done
      printf '%s\t%s\t%s\t%s\n' "$l" "$s" "$lb" "$(loadavg)" >>"$LOADS"
    done
  done
}

# ------------------------------------------------- latency and DKIM (load)
LAT=$W/lat.tsv # key run target json; key: CONC, or CONC@RATE for a paced run
: >"$LAT"
# lat_keys: the bench/load cells, "CONC" (as fast as the target answers)
# for each LAT_CONC, then "CONC@RATE" (LAT_RATE msg/s offered, an open
# loop) at the first LAT_CONC.
lat_keys() {
  local c
  for c in $LAT_CONC; do echo "$c"; done
  [ "$LAT_RATE" = 0 ] || echo "${LAT_CONC%% *}@$LAT_RATE"
}
latency() {
  local key c rate r tgt port out
  log "latency/DKIM: bench/load, 4 KiB DKIM-signed, cells $(lat_keys | tr '\n' ' ')(CONC@RATE: paced), $LAT_MSGS messages, $RUNS runs"
  local m0 d0 m1 d1
  m0=$(metrics)
  d0=$(metric_sum gateway_check_results_total 'check="dkim",result="pass"' <<<"$m0")
  for key in $(lat_keys); do
    c=${key%@*}
    rate=0
    [ "$key" = "$c" ] || rate=${key#*@}
    for ((r = 1; r <= RUNS; r++)); do
      for tgt in sink mxgate; do
        if [ "$tgt" = sink ]; then port=$SINK_PORT; else port=$MXGATE_PORT; fi
        run_fg "$W/logs/load.json" "$W/logs/load.err" timeout "$RUN_TIMEOUT" "$W/bin/load" \
          -addr "127.0.0.1:$port" -c "$c" -n "$LAT_MSGS" -size 4096 -per-conn 1 -from "$FROM" -to "$TO" -rate "$rate" \
          -helo "$HELO" -dkim-key "$DKIM_KEY" -dkim-domain example.test -dkim-selector bench -warmup 200 -json || true
        out=$(cat "$W/logs/load.json")
        if [ "$(jq -r '.fail' <<<"$out" 2>/dev/null)" != 0 ] || [ "$(jq -r '.ok' <<<"$out" 2>/dev/null)" != "$LAT_MSGS" ]; then
          fail "load -> $tgt $key run=$r: $(jq -c '{ok, fail, fail_by_code}' <<<"$out" 2>/dev/null || echo "$out") $(tail -c 300 "$W/logs/load.err")"
        fi
        printf '%s\t%s\t%s\t%s\n' "$key" "$r" "$tgt" "$(jq -c . <<<"$out" 2>/dev/null || echo '{}')" >>"$LAT"
        log "  load -> $tgt $key run=$r: $(jq -r '"\(.msgs_per_sec|floor) msg/s, session p50 \(.session_p50_ms) ms p99 \(.session_p99_ms) ms"' <<<"$out" 2>/dev/null || echo '?')"
        if [ "$tgt" = mxgate ]; then : >"$MX/verdicts.jsonl"; fi
        sleep "$PAUSE"
      done
    done
  done
  m1=$(metrics)
  d1=$(metric_sum gateway_check_results_total 'check="dkim",result="pass"' <<<"$m1")
  local want
  want=$(($(lat_keys | wc -l) * RUNS * (LAT_MSGS + 200)))
  if [ $((d1 - d0)) -lt "$want" ]; then
    fail "mxgate verified $((d1 - d0)) DKIM signatures as pass during the load runs, want $want"
  else
    sane "mxgate: $((d1 - d0)) DKIM signatures verified as pass during the load runs ($want messages)"
  fi
}

# ------------------------------------------------------------------ report
fmt_ratio() { # fmt_ratio pct|x VALUES... (median of per-run ratios)
  local kind=$1
  shift
  [ $# -gt 0 ] || {
    echo "-"
    return
  }
  local med
  med=$(printf '%s\n' "$@" | median_f)
  if [ "$kind" = pct ]; then
    awk -v v="$med" 'BEGIN{printf "%.0f %%", v*100}'
  else
    awk -v v="$med" 'BEGIN{printf "%.2f×", v}'
  fi
}

# rates SIZE CONC SYSTEM: the per-run rates of a cell, in run order
rates() { awk -F'\t' -v l="$1" -v s="$2" -v y="$3" 'NR>1 && $1==l && $2==s && $4==y {print $6 ($8=="ok"?"":"!")}' "$RAW"; }

report() {
  local l s sys r cell med runs v a b
  echo "# mxgate benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname -s)"
  echo
  echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
  echo "- $(go version 2>/dev/null | cut -d' ' -f3 || echo go?), Postfix $(postconf -d -h mail_version 2>/dev/null || echo ?), redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)$(has haraka && echo ", Haraka $HARAKA_VERSION (node $(node --version), nodes=${HARAKA_NODES:-1})")"
  echo "- settings: PEERS=\"$PEERS\" CONC=\"$CONC\" SIZES=\"$SIZES\" RUNS=$RUNS MSGS=${MSGS:-per size} QUICK=$QUICK GL_STORE=$GL_STORE SEALED=$SEALED GOGC=${GOGC:-default} GOMEMLIMIT=${GOMEMLIMIT:-default}"
  echo "- everything on the same machine and cores: load generator, gateway, backend, DNS, redis. Only ratios measured in the same run mean much."
  echo
  echo "## Throughput: smtp-source, one connection per message"
  echo
  echo "msg/s, median of $RUNS run(s), the runs in brackets in run order (\`!\` = that run failed). Postfix: end to end, until its queue is empty. Ratios: median of mxgate's per-run ratio to the system measured in the same run."
  echo
  local hdr="| size | conc | msgs |" sep="|---|---|---|"
  for sys in "${SYSTEMS[@]}"; do
    if [ "$sys" = postfix ]; then hdr+=" postfix (end to end) |"; else hdr+=" $sys |"; fi
    sep+="---|"
  done
  if has mxgate; then
    for sys in "${SYSTEMS[@]}"; do
      [ "$sys" = mxgate ] && continue
      hdr+=" mxgate/$sys |"
      sep+="---|"
    done
    hdr+=" mxgate peak RSS |"
    sep+="---|"
  fi
  hdr+=" load before → after |"
  sep+="---|"
  echo "$hdr"
  echo "$sep"
  for l in $SIZES; do
    for s in $CONC; do
      cell="| $l | $s | $(msgs_for_size "$l") |"
      for sys in "${SYSTEMS[@]}"; do
        mapfile -t runs < <(rates "$l" "$s" "$sys")
        med=$(printf '%s\n' "${runs[@]}" | tr -d '!' | median)
        cell+=" **$med** (${runs[*]}) |"
      done
      if has mxgate; then
        for sys in "${SYSTEMS[@]}"; do
          [ "$sys" = mxgate ] && continue
          local ratios=()
          for ((r = 1; r <= RUNS; r++)); do
            a=$(awk -F'\t' -v l="$l" -v s="$s" -v r="$r" 'NR>1 && $1==l && $2==s && $3==r && $4=="mxgate" && $8=="ok" {print $6}' "$RAW")
            b=$(awk -F'\t' -v l="$l" -v s="$s" -v r="$r" -v y="$sys" 'NR>1 && $1==l && $2==s && $3==r && $4==y && $8=="ok" {print $6}' "$RAW")
            if [ -n "$a" ] && [ -n "$b" ] && [ "$b" != 0 ]; then
              ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.4f", a/b}')")
            fi
          done
          if [ "$sys" = ceiling ]; then v=$(fmt_ratio pct "${ratios[@]}"); else v=$(fmt_ratio x "${ratios[@]}"); fi
          cell+=" $v |"
        done
        v=$(awk -F'\t' -v l="$l" -v s="$s" '$1==l && $2==s && $4>m {m=$4} END{if(m) printf "%.0f MiB", m/1024; else print "-"}' "$RSS")
        cell+=" $v |"
      fi
      v=$(awk -F'\t' -v l="$l" -v s="$s" '$1==l && $2==s {print $3 " → " $4}' "$LOADS")
      cell+=" $v |"
      echo "$cell"
    done
  done
  echo
  if [ -s "$LAT" ]; then
    latency_report
  elif has mxgate && [ "$LATENCY" = 1 ]; then
    echo "## Latency and DKIM"
    echo
    echo "Not measured: bench/load was not available (see the log)."
    echo
  fi
  if has mxgate; then
    echo "## mxgate after the runs"
    echo
    local m
    m=$(metrics 2>/dev/null || true)
    echo '```'
    grep -E '^gateway_transactions_total|^gateway_replies_total|^gateway_check_results_total|^gateway_dnsbl_zone_healthy|^gateway_greylist_store_errors_total|^gateway_dns_queries_total|^gateway_dns_cache_(hits|misses)_total|^go_goroutines|^process_resident_memory_bytes' <<<"$m" || true
    echo '```'
    echo
  fi
  echo "## Sanity checks before measuring"
  echo
  for v in "${SANITY[@]}"; do echo "- $v"; done
  echo
  if [ ${#FAILURES[@]} -gt 0 ]; then
    echo "## FAILURES"
    echo
    for v in "${FAILURES[@]}"; do echo "- $v"; done
    echo
  fi
  echo "## Raw runs"
  echo
  echo '```'
  column -t -s $'\t' "$RAW" 2>/dev/null || cat "$RAW"
  echo '```'
}

latency_report() {
  local c tgt f
  echo "## Latency and DKIM: bench/load, 4 KiB DKIM-signed (rsa-sha256, 2048), one connection per message"
  echo
  echo "Medians of $RUNS run(s) of $LAT_MSGS messages after 200 warm-up messages (so the gateway's DNS cache is warm: DNS excluded). session = dial to the 250 after DATA; data = end-of-data sent to its 250."
  echo "Offered: \`max\` = each session sends its next message when the last is answered (closed loop; the latency includes the wait for the CPU that load, gateway and backend share); \`N/s\` = messages due at a fixed rate whatever the target does (open loop, bench/load -rate), latency counted from when each was due."
  echo
  echo "| conc | offered | target | msg/s | session p50 ms | session p90 ms | session p99 ms | data p50 ms | data p99 ms |"
  echo "|---|---|---|---|---|---|---|---|---|"
  local key c offered
  for key in $(lat_keys); do
    c=${key%@*}
    offered=max
    [ "$key" = "$c" ] || offered="${key#*@}/s"
    for tgt in sink mxgate; do
      local row="| $c | $offered | smtp-sink directly |"
      [ "$tgt" = sink ] || row="| $c | $offered | mxgate → smtp-sink |"
      row+=" $(lat_med "$key" "$tgt" msgs_per_sec | awk '{printf "%.0f", $1}') |"
      for f in session_p50_ms session_p90_ms session_p99_ms data_p50_ms data_p99_ms; do
        row+=" $(lat_med "$key" "$tgt" "$f" | awk '{printf "%.2f", $1}') |"
      done
      echo "$row"
    done
  done
  echo
  for key in $(lat_keys); do
    c=${key%@*}
    offered="as fast as each answers"
    [ "$key" = "$c" ] || offered="${key#*@} msg/s offered"
    echo "- c=$c, $offered: mxgate adds $(lat_diff "$key" session_p50_ms) ms at p50 and $(lat_diff "$key" session_p99_ms) ms at p99 per session (data phase: $(lat_diff "$key" data_p50_ms) / $(lat_diff "$key" data_p99_ms) ms); throughput $(awk -v a="$(lat_med "$key" mxgate msgs_per_sec)" -v b="$(lat_med "$key" sink msgs_per_sec)" 'BEGIN{if(b>0) printf "%.0f %%", 100*a/b; else print "-"}') of smtp-sink's"
  done
  echo
}
lat_med() { # lat_med CONC TARGET FIELD
  awk -F'\t' -v c="$1" -v t="$2" '$1==c && $3==t {print $4}' "$LAT" | jq -r ".$3 // empty" | median_f
}
lat_diff() {
  awk -v a="$(lat_med "$1" mxgate "$2")" -v b="$(lat_med "$1" sink "$2")" 'BEGIN{printf "%+.2f", a-b}'
}

# ----------------------------------------------------------------- profile
# profile: a CPU profile of the gateway under smtp-source load (4 KiB, the
# largest CONC), taken over PROFILE_SECS; the top of it goes in the report.
profile() {
  local s
  s=$(echo "$CONC" | tr ' ' '\n' | sort -n | tail -1)
  log "profile: ${PROFILE_SECS}s CPU profile of mxgate under 4 KiB, c=$s"
  # batches of 2000 until the profile is taken; the loop ends within a batch
  : >"$W/profile.stop"
  (while [ -e "$W/profile.stop" ]; do
    timeout "$RUN_TIMEOUT" /usr/sbin/smtp-source -4 -s "$s" -m 2000 -l 4096 -M "$HELO" -f "$FROM" -t "$TO" \
      "127.0.0.1:$MXGATE_PORT" >>"$W/logs/profile-src.out" 2>&1 || break
  done) &
  local src=$!
  sleep 1
  curl -fsS --max-time $((PROFILE_SECS + 5)) -o "$W/cpu.pprof" \
    "http://127.0.0.1:$ADMIN_PORT/debug/pprof/profile?seconds=$PROFILE_SECS" || fail "profile: fetching the CPU profile failed"
  rm -f "$W/profile.stop"
  wait "$src" 2>/dev/null || true
  if [ -s "$W/cpu.pprof" ]; then
    cp "$W/cpu.pprof" "${OUT%.md}.cpu.pprof"
    go tool pprof -top -nodecount=40 "$W/bin/gateway" "$W/cpu.pprof" >"$W/profile-top.txt" 2>/dev/null || true
    go tool pprof -top -cum -nodecount=40 "$W/bin/gateway" "$W/cpu.pprof" >"$W/profile-cum.txt" 2>/dev/null || true
  fi
}

# ==================================================================== main
grep -q "^nameserver $RESOLVER_IP\$" /etc/resolv.conf || die "not in the private namespace: /etc/resolv.conf is not 'nameserver $RESOLVER_IP'"
grep -v "^nameserver $RESOLVER_IP\$" /etc/resolv.conf | grep -q '^nameserver' && die "/etc/resolv.conf names another server"

for p in "$RESOLVER_IP:53" "127.0.0.1:$SINK_PORT" "127.0.0.1:$MXGATE_PORT" "127.0.0.1:$POSTFIX_PORT" \
  "127.0.0.1:$HARAKA_PORT" "127.0.0.1:$ADMIN_PORT" "127.0.0.1:$REDIS_PORT"; do
  port_free "${p%:*}" "${p##*:}" || die "$p is in use: stop what runs there or pick other ports (see the header of $0)"
done

log "work dir $W; systems: ${SYSTEMS[*]}; sizes $SIZES; conc $CONC; runs $RUNS"
make_cert
dns_up
sink_up
if has haraka || { has mxgate && [ "$GL_STORE" = redis ]; }; then redis_up; fi
if has mxgate; then mxgate_up; fi
if has postfix; then postfix_up; fi
if has haraka; then haraka_up; fi

if has mxgate; then check_mxgate; fi
if has postfix; then check_postfix; fi
if has haraka; then check_haraka; fi
[ ${#FAILURES[@]} -eq 0 ] || log "sanity checks reported problems: see the report"

matrix
if has mxgate && [ "$LATENCY" = 1 ] && [ -x "$W/bin/load" ]; then latency; fi
mkdir -p "$(dirname "$OUT")"
if has mxgate && [ "$PROFILE" = 1 ]; then profile; fi

report | tee "$OUT"
if [ -s "$W/profile-top.txt" ]; then
  {
    echo
    echo "## CPU profile of mxgate (4 KiB, smtp-source, ${PROFILE_SECS}s; raw profile: $(basename "${OUT%.md}.cpu.pprof"))"
    echo
    echo '```'
    sed -n '1,50p' "$W/profile-top.txt"
    echo '```'
    echo
    echo '```'
    sed -n '1,50p' "$W/profile-cum.txt"
    echo '```'
  } | tee -a "$OUT"
fi
log "report written to $OUT"
if [ ${#FAILURES[@]} -gt 0 ]; then
  log "${#FAILURES[@]} failure(s): see the FAILURES section"
  exit 1
fi
