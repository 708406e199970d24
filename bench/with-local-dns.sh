#!/bin/sh
# Run a command with /etc/resolv.conf replaced -- for that process tree only --
# by "nameserver $RESOLVER_IP" (default 127.0.0.53, where bench/run.sh runs
# bench/dnsd on port 53). It uses a private mount namespace (unshare --mount)
# and a bind mount: the host's /etc/resolv.conf is untouched, and every
# libc, c-ares or Go resolver in the child only ever talks to loopback.
# bench/run.sh runs its whole measurement phase (the gateway, Postfix,
# Haraka, redis, smtp-sink, smtp-source) through it.
#
# SEALED=1 also gives the command a new network namespace with only the
# loopback interface: nothing inside can reach any other address at all.
#
#   usage: [RESOLVER_IP=127.0.0.53] [SEALED=1] bench/with-local-dns.sh CMD [ARGS...]
# Requires root.
set -eu
ip=${RESOLVER_IP:-127.0.0.53}
case $ip in
  127.*) ;;
  *) echo "with-local-dns.sh: RESOLVER_IP=$ip is not a 127.0.0.0/8 address" >&2; exit 2 ;;
esac
rc=$(mktemp /tmp/resolv.mxgate-bench.XXXXXX)
printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$ip" >"$rc"
chmod 644 "$rc"
net=
if [ "${SEALED:-0}" = 1 ]; then net=--net; fi
# shellcheck disable=SC2016 # $0/$@ belong to the inner shell
exec unshare --mount --propagation private $net \
  sh -c '{ [ -z "$1" ] || ip link set lo up; } && mount --bind "$0" /etc/resolv.conf && rm -f "$0" && shift && exec "$@"' \
  "$rc" "$net" "$@"
