#!/usr/bin/env bash
# Starts a redis-server for the backplane (AVATAR_REDIS_URL) on loopback, its data in var/redis/ with the
# append-only file on, so rooms survive a restart of Redis as well as of the servers. Prints the URL.
#   scripts/redis.sh [port]          start (default port 6379); again: says it is running
#   scripts/redis.sh stop [port]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "redis.sh: redis-server is missing: run scripts/setup.sh" >&2; exit 1; }
if [ "${1:-}" = "stop" ]; then
  redis-cli -p "${2:-6379}" shutdown
  exit 0
fi
port="${1:-6379}"
if redis-cli -p "$port" ping >/dev/null 2>&1; then
  echo "redis://127.0.0.1:$port/0 (already running)"
  exit 0
fi
mkdir -p var/redis
redis-server --port "$port" --bind 127.0.0.1 --dir "$PWD/var/redis" --appendonly yes --appendfsync everysec \
  --save "" --daemonize yes --logfile "$PWD/var/redis/redis.log" --pidfile "$PWD/var/redis/redis.pid"
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$port" ping >/dev/null
echo "redis://127.0.0.1:$port/0"
