#!/usr/bin/env bash
# Installs the pinned oidc-provider (package-lock.json) into node_modules/ beside this script,
# once: does nothing when node_modules/oidc-provider is already there at the locked version.
# Exit status is npm's; its output is shown only on failure.
set -euo pipefail
cd "$(dirname "$0")"

want=$(node -p 'require("./package-lock.json").packages["node_modules/oidc-provider"].version')
have=$(node -p 'try { require("./node_modules/oidc-provider/package.json").version } catch { "" }')
if [ -n "$have" ] && [ "$have" = "$want" ]; then
        exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >"$log" 2>&1; then
        cat "$log" >&2
        echo "install.sh: npm ci failed" >&2
        exit 1
fi
