#!/usr/bin/env bash
# run.sh - the dashboard's browser test (dashboard.mjs, whose header lists
# its environment): installs what is missing, then runs it.
#   SKIPQ_DATABASE_URL=postgres://... tests/browser/run.sh
# Needs node (18 or later), npm and Debian's chromium: scripts/test.sh
# installs them for the plain suite; run alone, this installs them too.
# playwright-core comes from package-lock.json (npm ci), only when the lock
# changed since the last install, and never downloads a browser of its own.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
need=()
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
[ -x "${SKIPQ_CHROMIUM:-/usr/bin/chromium}" ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] || "$HERE/../../scripts/deps.sh" "${need[@]}"
if ! cmp -s "$HERE/package-lock.json" "$HERE/node_modules/.skipq-installed-lock"; then
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >&2
    cp "$HERE/package-lock.json" "$HERE/node_modules/.skipq-installed-lock"
fi
exec node "$HERE/dashboard.mjs"
