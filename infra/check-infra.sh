#!/usr/bin/env bash
# Lints template.yaml with cfn-lint (SAM transform applied offline) and type-checks vercel.json against
# @vercel/config's VercelConfig type. Needs infra/.venv and infra/node_modules (infra/test.sh installs both).
set -euo pipefail
infra="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$infra")"
echo "== cfn-lint template.yaml"
"$infra/.venv/bin/cfn-lint" "$root/template.yaml"
echo "cfn-lint: clean"
echo "== vercel.json against @vercel/config"
mkdir -p "$infra/.run/vercel-check"
check="$infra/.run/vercel-check/check.ts"
{
  echo 'import type { VercelConfig } from "@vercel/config/v1/types";'
  printf 'export const config: VercelConfig & { $schema?: string } = '
  cat "$root/vercel.json"
  echo ';'
} >"$check"
ln -sfn "$infra/node_modules" "$infra/.run/vercel-check/node_modules"
"$infra/node_modules/.bin/tsc" --noEmit --strict --module node16 --moduleResolution node16 --skipLibCheck "$check"
echo "vercel.json: type-checks"
