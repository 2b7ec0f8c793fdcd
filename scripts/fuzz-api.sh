#!/usr/bin/env bash
# Fuzzes the running server against its own OpenAPI document (issue 4).
#
# Builds ocs-dash (debug) if needed, makes a tiny demo snapshot in a temp
# dir, creates an API key for its first team, serves it on a free loopback
# port and runs schemathesis (PyPI, pinned below, in target/fuzz-venv)
# against http://127.0.0.1:PORT/api/openapi.json with that key. It fails on
# any 5xx, any status code the document does not list for the operation, or
# any response body that breaks the document's schema.
#
# Bounded: a fixed number of examples per operation, a fixed seed, and one
# timeout (FUZZ_TIMEOUT) over all the schemathesis runs together. Only loopback traffic. The server is
# always stopped (trap).
#
# Knobs: FUZZ_MAX_EXAMPLES (default 40), FUZZ_SEED (default 4242),
# FUZZ_TIMEOUT seconds (default 300), FUZZ_ARGS (more schemathesis run
# options, split on spaces, e.g. "--report har --report-dir /tmp/fuzz").
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-40}"
SEED="${FUZZ_SEED:-4242}"
TIMEOUT="${FUZZ_TIMEOUT:-300}"
VENV=target/fuzz-venv
BIN=target/debug/ocs-dash
started=$(date +%s)

summary() { echo "fuzz-api: $*, $(($(date +%s) - started)) s"; }

cargo build --quiet --features ballista --bin ocs-dash  # the features scripts/test.sh builds with

if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d /tmp/ocs-dash-fuzz.XXXXXX)
server=""
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

data="$work/data"
"$BIN" demo --no-serve --scale tiny --data "$data" >"$work/demo.log" 2>&1
team=$("$BIN" sql --all-teams --data "$data" --format csv "SELECT slug FROM teams ORDER BY slug LIMIT 1" | tail -n 1)
key=$("$BIN" keys create --team "$team" --user fuzz --data "$data" 2>/dev/null)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
"$BIN" serve --data "$data" --bind "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
server=$!
healthy() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$base/healthz" 2>/dev/null; }
for _ in $(seq 1 100); do
    healthy && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; summary "FAILED (server did not start)"; exit 1; }
    sleep 0.2
done
healthy || { cat "$work/serve.log" >&2; summary "FAILED (no /healthz)"; exit 1; }

# Most requests must name the key's team, and a real chart, to reach a
# handler: schemathesis uses these values most of the time (dictionaries
# with a probability) and still fuzzes the rest.
charts='"overview", "active-participants", "session-analytics", "message-volume", "bot-performance", "user-engagement", "channel-breakdown", "tag-analytics"'
# (No crash cache: each run is only its seed.)
cat >"$work/schemathesis.toml" <<EOF
[cache]
enabled = false

[dictionaries.team]
values = ["$team"]

[dictionaries.chart]
values = [$charts]

[dictionaries.date_range]
values = ["7", "30", "90", "365", "custom"]

[dictionaries.granularity]
values = ["hourly", "daily", "weekly", "monthly"]

[dictionaries.order_dir]
values = ["asc", "desc"]

[dictionaries.timezone]
values = ["UTC", "Africa/Nairobi", "America/New_York", "Asia/Kolkata"]

[dictionaries.format]
values = ["csv", "json"]

[dictionaries.asset]
values = ["dashboard.js", "dashboard.css", "favicon.svg", "vendor/chart.umd.min.js"]

[parameters]
"path.team_slug" = { dictionary = "team", probability = 0.9 }
"path.chart" = { dictionary = "chart", probability = 0.8 }
"path.path" = { dictionary = "asset", probability = 0.5 }
"query.date_range" = { dictionary = "date_range", probability = 0.7 }
"query.granularity" = { dictionary = "granularity", probability = 0.7 }
"query.order_dir" = { dictionary = "order_dir", probability = 0.7 }
"query.timezone" = { dictionary = "timezone", probability = 0.7 }
"body.chart" = { dictionary = "chart", probability = 0.8 }
"body.format" = { dictionary = "format", probability = 0.7 }
"body.filters.date_range" = { dictionary = "date_range", probability = 0.7 }
"body.filters.granularity" = { dictionary = "granularity", probability = 0.7 }
EOF

# The coverage phase does not use dictionaries, so a second pass pins
# {team_slug} and {chart} for the chart route, one chart at a time, to run
# its coverage cases (edge and invalid query values) against real handlers.
for chart in overview active-participants session-analytics message-volume bot-performance \
    user-engagement channel-breakdown tag-analytics; do
    cat >"$work/chart-$chart.toml" <<EOF
[cache]
enabled = false

[parameters]
"path.team_slug" = "$team"
"path.chart" = "$chart"
EOF
done

deadline=$(($(date +%s) + TIMEOUT))
runs=0
failed=""
# fuzz NAME CONFIG [schemathesis run options...]
fuzz() {
    local name=$1 config=$2 left rc
    shift 2
    left=$((deadline - $(date +%s)))
    if [ "$left" -le 0 ]; then
        echo "fuzz-api: out of time before $name" >&2
        failed="$failed $name(timeout)"
        return
    fi
    echo "=== fuzz-api: $name ==="
    runs=$((runs + 1))
    set +e
    timeout --kill-after=10 "$left" "$VENV/bin/st" --config-file "$config" run "$base/api/openapi.json" \
        --header "Authorization: Bearer $key" \
        --checks not_a_server_error,status_code_conformance,response_schema_conformance \
        --seed "$SEED" \
        --generation-database none \
        --workers 1 \
        --request-timeout 30 \
        --no-color \
        "$@" ${FUZZ_ARGS:-}
    rc=$?
    set -e
    case "$rc" in
        0) ;;
        124 | 137) failed="$failed $name(timeout)" ;;
        *) failed="$failed $name(exit $rc)" ;;
    esac
}

echo "fuzz-api: schemathesis $SCHEMATHESIS_VERSION against $base (team $team), $MAX_EXAMPLES examples per operation, seed $SEED, timeout ${TIMEOUT}s"
fuzz all-operations "$work/schemathesis.toml" --max-examples "$MAX_EXAMPLES"
for chart in overview active-participants session-analytics message-volume bot-performance \
    user-engagement channel-breakdown tag-analytics; do
    fuzz "chart-$chart" "$work/chart-$chart.toml" --phases coverage,fuzzing \
        --include-path '/a/{team_slug}/dashboard/api/{chart}/' --max-examples "$((MAX_EXAMPLES / 2 + 1))"
done

if [ -n "$failed" ]; then
    echo "--- server log (last 40 lines) ---" >&2
    tail -n 40 "$work/serve.log" >&2
    summary "FAILED:$failed (of $runs schemathesis runs, seed $SEED)"
    exit 1
fi
summary "passed ($runs schemathesis $SCHEMATHESIS_VERSION runs, $MAX_EXAMPLES examples per operation, seed $SEED)"
