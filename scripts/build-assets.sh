#!/usr/bin/env bash
# Builds the dashboard's front-end assets from the npm registry.
#
#   bash scripts/build-assets.sh              # npm ci in web/, then copy
#   bash scripts/build-assets.sh --no-install # copy from an existing web/node_modules
#
# The only build step of the page: Chart.js's UMD bundle is copied from
# web/node_modules into api/assets/static/vendor/, where the server compiles
# it into the binary (nothing is loaded from a CDN; the page works offline).
# The copied file is committed, so `cargo run -- demo` works without Node;
# CI re-runs this script and `git diff --exit-code api/assets` proves the
# committed copy is exactly what the pinned npm package ships.
# `npm ci` also installs playwright-core for the browser test
# (tests/browser/, which drives Debian's /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
for arg in "$@"; do
    case "$arg" in
        --no-install) install=0 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

if ! command -v npm >/dev/null; then
    echo "npm not found: install Node.js and npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi

if [ "$install" = 1 ]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi

src=web/node_modules/chart.js/dist/chart.umd.min.js
if [ ! -f "$src" ]; then
    echo "$src missing: run without --no-install (npm ci in web/)" >&2
    exit 1
fi
dest=api/assets/static/vendor
mkdir -p "$dest"
# The bundle's last line points browsers' developer tools at a source map
# that is not shipped; drop it so no tool ever asks the server for it.
grep -v '^//# sourceMappingURL=' "$src" > "$dest/chart.umd.min.js"
cp web/node_modules/chart.js/LICENSE.md "$dest/chart.js.LICENSE.md"
version=$(node -p "require('./web/node_modules/chart.js/package.json').version" 2>/dev/null || echo "?")
echo "copied Chart.js $version to $dest/chart.umd.min.js"
