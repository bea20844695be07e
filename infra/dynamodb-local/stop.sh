#!/usr/bin/env bash
# Stops the DynamoDB Local that start.sh started (no-op when none is running).
set -uo pipefail
infra="$(cd "$(dirname "$0")/.." && pwd)"
pidfile="$infra/.run/dynamodb.pid"
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
fi
rm -f "$pidfile"
