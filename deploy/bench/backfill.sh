#!/usr/bin/env bash
# backfill.sh: featurepipe's backfill against DuckDB on the same data, in one run.
#
#   deploy/bench/backfill.sh            # the issue's scale: 10M events, 1M spine rows, 100k users
#   EVENTS=1000000 ROWS=100000 KEYS=10000 deploy/bench/backfill.sh   # a quick run
#
# 1. installs duckdb (PyPI) into a venv under .cache/bench-venv (once);
# 2. BenchmarkBackfill: produces EVENTS events to an embedded broker (kfake), runs
#    the whole featurepipe backfill job (offset listing, Kafka replay, decode,
#    sweep, Parquet output) over ROWS spine rows once, timed, then exports the
#    replayed events to Parquet in a second, untimed run;
# 3. backfill_duckdb.py computes the same features with DuckDB from that Parquet
#    file (load + compute timed; the Parquet export is free for DuckDB) and
#    checks every value against featurepipe's output;
# 4. prints both times and the ratio, and both CPU times (user + system, every
#    thread) and theirs: on a machine shared with other work, CPU time moves far
#    less with the load than wall time does.
#
# Everything lands in $BENCH_DIR (default .cache/bench). GOMAXPROCS and DuckDB's
# threads both default to every core of the machine.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
events="${EVENTS:-10000000}"
rows="${ROWS:-1000000}"
keys="${KEYS:-100000}"
dir="${BENCH_DIR:-$root/.cache/bench}"
venv="$root/.cache/bench-venv"
go="${GO:-go}"

if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
	echo "installing duckdb into $venv" >&2
	python3 -m venv "$venv"
	"$venv/bin/pip" install --quiet duckdb
fi

mkdir -p "$dir"
rm -f "$dir"/featurepipe.json "$dir"/duckdb.json
echo "featurepipe: $events events, $rows spine rows, $keys users, $(nproc) cores; load average $(cut -d" " -f1-3 /proc/loadavg)" >&2
(cd "$root" && BACKFILL_BENCH_EVENTS="$events" BACKFILL_BENCH_ROWS="$rows" BACKFILL_BENCH_KEYS="$keys" \
	BACKFILL_BENCH_DIR="$dir" "$go" test -run '^$' -bench '^BenchmarkBackfill$' -benchtime 1x -timeout 1h \
	./pipeline/backfill) | grep -E 'Benchmark|bench_test|ok|FAIL' >&2
echo "load average after featurepipe: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo "duckdb: same events from $dir/events.parquet" >&2
"$venv/bin/python" "$root/deploy/bench/backfill_duckdb.py" --manifest "$dir/train.parquet.manifest.json" \
	--events "$dir/events.parquet" --compare "$dir/train.parquet" --timing "$dir/duckdb.json" >&2
echo "load average after duckdb: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$venv/bin/python" - "$dir/featurepipe.json" "$dir/duckdb.json" <<'PY'
import json, sys
fp, dk = (json.load(open(p)) for p in sys.argv[1:3])
print(f"events {fp['events']}, spine rows {fp['rows']}, features {fp['features']}, cores {fp['gomaxprocs']}")
print(f"featurepipe backfill (Kafka replay + decode + compute + Parquet out): {fp['seconds']:.2f}s")
print(f"duckdb {dk['duckdb']} (Parquet load {dk['load']:.2f}s + SQL {dk['compute']:.2f}s):       {dk['total']:.2f}s")
r = dk['total'] / fp['seconds']
print(f"ratio duckdb/featurepipe: {r:.2f} ({'featurepipe faster' if r > 1 else 'DuckDB faster'})")
if 'cpu_seconds' in fp and 'cpu_total' in dk:
    print(f"CPU seconds (user + system): featurepipe {fp['cpu_seconds']:.2f} (with the in-process broker), "
          f"duckdb {dk['cpu_total']:.2f}; ratio {dk['cpu_total'] / fp['cpu_seconds']:.2f}")
PY
