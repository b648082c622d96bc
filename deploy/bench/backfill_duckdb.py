#!/usr/bin/env python3
"""Compute a featurepipe backfill with DuckDB, to compare speed and values.

Inputs are what `featurepipe backfill ... --export-events events.parquet`
(or BenchmarkBackfill with BACKFILL_BENCH_DIR) leaves behind:

  * the manifest (<out>.manifest.json): feature definitions, point-in-time
    mode, the spine path and its key column;
  * events.parquet: the replayed valid events (topic, partition, offset, key,
    ts, arrival, one double column per value field);
  * the spine (CSV or Parquet) named in the manifest.

Every feature is computed with the semantics of DESIGN.md, as SQL:

    floor((T - W) / hop) * hop <= ts < T        (lifetime: ts < T)
    arrival mode also: arrival <= T
    last: the value with the largest (ts, offset)
    empty windows: count/sum 0, others NULL (or the feature's default)

as one range join per feature (DuckDB plans it as an IEJoin) grouped by spine
row. With --compare, the result is checked cell by cell against featurepipe's
output (rows in spine order; 1e-9 relative tolerance).

    pip install duckdb
    python3 deploy/bench/backfill_duckdb.py --manifest /tmp/bf/train.parquet.manifest.json \\
        --events /tmp/bf/events.parquet --compare /tmp/bf/train.parquet
"""

import argparse
import json
import math
import sys
import time

import duckdb


def spine_sql(path, fmt, key):
    """The spine as (rid, key, T): rid is the row's position in the file."""
    if fmt == "csv":
        src = f"read_csv('{path}', all_varchar=true, header=true)"
        t = ("CASE WHEN regexp_full_match(trim(\"timestamp\"), '-?[0-9]+') "
             "THEN CAST(trim(\"timestamp\") AS BIGINT) "
             "ELSE CAST(ceil(epoch_us(CAST(\"timestamp\" AS TIMESTAMPTZ)) / 1000.0) AS BIGINT) END")
    else:
        src = f"read_parquet('{path}')"
        t = "CASE WHEN typeof(\"timestamp\") LIKE 'TIMESTAMP%' THEN epoch_ms(\"timestamp\") ELSE CAST(\"timestamp\" AS BIGINT) END"
    return (f"SELECT row_number() OVER () - 1 AS rid, CAST(\"{key}\" AS VARCHAR) AS key, {t} AS T FROM {src}")


def feature_sql(f, mode):
    """One feature's value per spine row."""
    topic = f["topic"].replace("'", "''")
    w, hop = f["window_ms"], f["hop_ms"]
    cond = [f"e.topic = '{topic}'", "e.key = s.key", "e.ts < s.T"]
    if w > 0:
        cond.append(f"e.ts >= CAST(floor((s.T - {w}) / {hop}) AS BIGINT) * {hop}")
    if mode == "arrival":
        cond.append("e.arrival <= s.T")
    field = f'e."{f.get("field", "")}"'
    agg = {
        "count": "count(e.ts)",
        "sum": f"coalesce(sum({field}), 0)",
        "avg": f"avg({field})",
        "min": f"min({field})",
        "max": f"max({field})",
        # ties on event time: the larger offset wins
        "last": f"arg_max({field}, struct_pack(t := e.ts, o := e.\"offset\"))",
    }[f["aggregation"]]
    if f.get("default") is not None:
        agg = f"coalesce({agg}, {float(f['default'])!r})"
    return (f"SELECT s.rid, {agg} AS v FROM spine s LEFT JOIN events e ON {' AND '.join(cond)} "
            f"GROUP BY s.rid")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--spine", help="default: the spine path in the manifest")
    ap.add_argument("--out", help="write the result here (.parquet)")
    ap.add_argument("--compare", help="featurepipe's output to compare with (.parquet or .csv)")
    ap.add_argument("--threads", type=int, default=0, help="DuckDB threads (default: all)")
    ap.add_argument("--timing", help="write the timings here as JSON (load, compute, total seconds; cpu_total: "
                    "CPU seconds of the process, every thread)")
    a = ap.parse_args()

    m = json.load(open(a.manifest))
    spine = a.spine or m["spine"]["path"]
    fmt = "csv" if spine.lower().endswith(".csv") else "parquet"
    con = duckdb.connect()
    if a.threads:
        con.execute(f"SET threads = {a.threads}")

    t0, c0 = time.perf_counter(), time.process_time()
    con.execute(f"CREATE TEMP TABLE spine AS {spine_sql(spine, fmt, m['key_column'])}")
    con.execute(f"CREATE TEMP TABLE events AS SELECT * FROM read_parquet('{a.events}')")
    t_load, c_load = time.perf_counter() - t0, time.process_time() - c0

    t1, c1 = time.perf_counter(), time.process_time()
    selects, joins = ["s.rid"], []
    for i, f in enumerate(m["features"]):
        con.execute(f"CREATE TEMP TABLE f{i} AS {feature_sql(f, m['point_in_time'])}")
        selects.append(f'f{i}.v AS "{f["column"]}"')
        joins.append(f"JOIN f{i} ON f{i}.rid = s.rid")
    con.execute(f"CREATE TEMP TABLE result AS SELECT {', '.join(selects)} FROM spine s {' '.join(joins)} ORDER BY s.rid")
    t_compute, c_compute = time.perf_counter() - t1, time.process_time() - c1
    rows = con.execute("SELECT count(*) FROM result").fetchone()[0]
    nev = con.execute("SELECT count(*) FROM events").fetchone()[0]
    print(f"duckdb {duckdb.__version__}: {nev} events, {rows} rows x {len(m['features'])} features: "
          f"load {t_load:.2f}s, compute {t_compute:.2f}s, total {t_load + t_compute:.2f}s "
          f"(featurepipe backfill: {m.get('duration_ms', 0) / 1000:.2f}s incl. Kafka replay)")
    if a.timing:
        with open(a.timing, "w") as fh:
            json.dump({"duckdb": duckdb.__version__, "events": nev, "rows": rows, "features": len(m["features"]),
                       "load": t_load, "compute": t_compute, "total": t_load + t_compute,
                       "cpu_total": c_load + c_compute}, fh)
    if a.out:
        con.execute(f"COPY result TO '{a.out}' (FORMAT parquet)")

    if a.compare:
        reader = "read_csv" if a.compare.lower().endswith(".csv") else "read_parquet"
        cols = [f["column"] for f in m["features"]]
        sel = ", ".join(f'TRY_CAST("{c}" AS DOUBLE) AS "{c}"' for c in cols)
        con.execute(f"CREATE TEMP TABLE fp AS SELECT row_number() OVER () - 1 AS rid, {sel} FROM {reader}('{a.compare}')")
        bad = 0
        for c in cols:
            diff = con.execute(f"""
                SELECT count(*) FROM result r JOIN fp ON fp.rid = r.rid
                WHERE (r."{c}" IS NULL) <> (fp."{c}" IS NULL)
                   OR abs(r."{c}" - fp."{c}") > 1e-9 * greatest(1, abs(r."{c}"))""").fetchone()[0]
            if diff:
                ex = con.execute(f"""SELECT r.rid, r."{c}", fp."{c}" FROM result r JOIN fp ON fp.rid = r.rid
                    WHERE (r."{c}" IS NULL) <> (fp."{c}" IS NULL) OR abs(r."{c}" - fp."{c}") > 1e-9 * greatest(1, abs(r."{c}"))
                    LIMIT 3""").fetchall()
                print(f"{c}: {diff} rows differ, e.g. (row, duckdb, featurepipe) {ex}")
                bad += diff
        if bad:
            sys.exit(1)
        print(f"all {rows * len(cols)} values equal featurepipe's output")


if __name__ == "__main__":
    main()
