#!/usr/bin/env bash
# Runs every test of ocs-dash on this machine.
#
# The browser test needs Node.js with web/node_modules (npm ci) and
# Debian's Chromium; this script installs what is missing (apt-get as root).
# The S3 tests need moto's server (PyPI): installed into target/moto-venv.
#
# The tests need a real PostgreSQL. They use $OCS_DASH_TEST_PG
# (default postgres://postgres@127.0.0.1:5432/postgres, the server of a
# development machine). When nothing answers there, this script starts a
# throwaway server from Debian's `postgresql` package (installing it with
# apt-get when missing) on a free port, points the tests at it, and stops it
# at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

export OCS_DASH_TEST_PG="${OCS_DASH_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

pg_up() {
    command -v psql >/dev/null && psql "$OCS_DASH_TEST_PG" -qAtc 'select 1' >/dev/null 2>&1
}

throwaway_pg() {
    local bindir
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$bindir" ]; then
        echo "PostgreSQL not found: installing Debian's postgresql package" >&2
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        else
            echo "run as root, or install PostgreSQL yourself: sudo apt-get install postgresql" >&2
            exit 1
        fi
        bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    local port dir
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    dir=$(mktemp -d /tmp/ocs-dash-pg.XXXXXX)
    local run=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home "$dir" postgres
        chown postgres "$dir"
        run=(runuser -u postgres --)
    fi
    "${run[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
    "${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    trap '"${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$dir"' EXIT
    export OCS_DASH_TEST_PG="postgres://postgres@127.0.0.1:$port/postgres"
    echo "started a throwaway PostgreSQL on port $port" >&2
}

pg_up || throwaway_pg

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "missing $*: install it (sudo apt-get install $*) and run again" >&2
        exit 1
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
[ -x /usr/bin/chromium ] || apt_install chromium
[ -f web/node_modules/playwright-core/package.json ] || (cd web && npm ci --no-audit --no-fund --silent)

# The S3 tests (tests/s3.rs) start moto's S3 server on loopback: moto from
# PyPI, pinned, in a venv of its own (5.2.5 honours If-None-Match on PUT,
# which publishing a snapshot relies on).
MOTO_VERSION=5.2.5
MOTO_VENV=target/moto-venv
if [ -z "${OCS_DASH_MOTO_SERVER:-}" ]; then
    if ! "$MOTO_VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
        echo "installing moto[server]==$MOTO_VERSION into $MOTO_VENV" >&2
        python3 -m venv "$MOTO_VENV"
        "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
    fi
    export OCS_DASH_MOTO_SERVER="$PWD/$MOTO_VENV/bin/moto_server"
fi

# With the optional Ballista support (tests/ballista.rs), one build for everything.
cargo test --workspace --all-targets --features ballista
