#!/usr/bin/env bash
# The comparative benchmark (issue #5): ocs-dash vs DuckDB vs Postgres on the
# same generated data set, the ETL vs the raw COPY floor, and the server
# under oha. See benches/compare.rs and the README's "Benchmarks" section.
#
#   bash scripts/bench-compare.sh [--scale m] [--db NAME --data DIR] [--reps 7]
#                                 [--only charts,etl,http] [any other flag of benches/compare.rs]
#
# Without --db/--data it generates the scale into the Postgres database
# ocs_bench_<scale> (kept for the next run) and exports it with
# `ocs-dash etl` into target/bench-compare/<scale>/data. With --db it uses
# that database (read only; the ETL part works on a copy made with
# `createdb -T`, so nobody else may be connected to it) and --data must hold
# its ETL snapshot.
#
# Needs: PostgreSQL reachable at $OCS_DASH_BENCH_PG (default
# postgres://postgres@127.0.0.1:5432, and the createdb/dropdb/psql clients),
# python3 with venv. DuckDB comes from PyPI into .venv-bench/, the load
# generator oha from crates.io into $target/oha (with the system's OpenSSL,
# Debian's libssl-dev, rather than building aws-lc: a few minutes, once).
# Builds in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

scale=m
db=
data=
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --db) db=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) pass+=("$1" "$2"); shift 2 ;;
  esac
done

pg=${OCS_DASH_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/ocs-dash
duckdb_version=2.0.1

echo "== release build" >&2
cargo build --release --quiet

echo "== DuckDB $duckdb_version in .venv-bench" >&2
if ! .venv-bench/bin/python -c "import duckdb, sys; sys.exit(duckdb.__version__ != '$duckdb_version')" 2>/dev/null; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet "duckdb==$duckdb_version"
fi

oha_version=1.16.0
oha=$target/oha/bin/oha
if ! "$oha" --version 2>/dev/null | grep -qF "$oha_version"; then
  echo "== oha $oha_version into $target/oha" >&2
  if [ "$(id -u)" = 0 ] && ! dpkg -s libssl-dev >/dev/null 2>&1; then
    apt-get install -y -qq libssl-dev pkg-config >/dev/null
  fi
  cargo install --quiet --locked --no-default-features --features native-tls oha --version "$oha_version" --root "$target/oha"
fi

if [ -z "$db" ]; then
  db=ocs_bench_$scale
  data=${data:-$target/bench-compare/$scale/data}
  if ! psql "$pg/$db" -Atc "SELECT 1 FROM chat_chatmessage LIMIT 1" >/dev/null 2>&1; then
    echo "== generating scale $scale into database $db" >&2
    dropdb -h 127.0.0.1 -U postgres --if-exists "$db"
    createdb -h 127.0.0.1 -U postgres "$db"
    "$bin" generate --database-url "$pg/$db" --scale "$scale" --seed 42
    # What autovacuum does to a live OCS database: visibility map and hint
    # bits set, so no side pays for setting them on its first read.
    psql "$pg/$db" -qc "VACUUM"
    rm -rf "$data"
  fi
  if [ ! -d "$data/manifests" ]; then
    echo "== ETL of $db into $data" >&2
    "$bin" etl --full --database-url "$pg/$db" --data "$data"
  fi
elif [ -z "$data" ]; then
  echo "--db needs --data (the directory holding that database's ETL snapshot)" >&2; exit 1
fi

echo "== benchmark (database $db, snapshot $data)" >&2
cargo bench --bench compare -- --scale "$scale" --db "$db" --data "$data" --pg "$pg" \
  --python .venv-bench/bin/python --bin "$bin" --oha "$oha" --work "$target/bench-compare" "${pass[@]}"
