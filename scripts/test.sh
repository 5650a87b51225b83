#!/usr/bin/env bash
# The one test command (`npm test`): type check, contract lint and compatibility, generated-code
# freshness, build (real-process tests run bin/replikit.js), then every vitest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "type check (tsc --noEmit)"
npx tsc --noEmit -p tsconfig.json

step "buf lint (STANDARD)"
npx buf lint

step "buf breaking (FILE) against the previous commit of main"
if base=$(git rev-parse --verify --quiet HEAD~1 2>/dev/null) && git cat-file -e "$base:proto" 2>/dev/null; then
  npx buf breaking --against ".git#ref=$base"
else
  echo "no earlier commit with proto/ to compare against; skipped"
fi

step "generated code is fresh (buf generate == src/gen)"
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
npx buf generate -o "$fresh"
if ! diff -r "$fresh/src/gen" src/gen; then
  echo "src/gen differs from what 'buf generate' makes: run 'npm run gen' and commit" >&2
  exit 1
fi
echo "src/gen is fresh"

step "build (tsc -p tsconfig.build.json)"
npm run --silent build

step "vitest"
mkdir -p .tmp
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.tmp/vitest-results.json "$@" || status=$?
# One plain closing line that any CI reader understands.
node -e '
  const r = JSON.parse(require("fs").readFileSync(".tmp/vitest-results.json", "utf8"));
  console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || true
exit "$status"
