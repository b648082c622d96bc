"""Checks featurepipe through the real Feast SDK (run by feast_sdk_test.go).

usage: python feast_check.py REPO_DIR CASES.json

CASES.json (written by the Go test, which computed every expected value by
brute force over the produced events):
  online:  {"features": ["view:name", ...], "rows": [{"user_id": k}, ...],
            "expected": [[value or null per feature] per row]}; a list
            feature's value (first_k, last_k: Array(Float64), Array(String))
            is a list, a string feature's (String) a string
  offline: {"features": [...], "keys": [...], "times_ms": [...],
            "expected": [[value or null per feature] per row]}
  service: {"name": NAME, "features": ["view:name", ...]}: the generated
            FeatureService, read with store.get_feature_service(NAME) online
            and offline; its features' expected values are the online and
            offline ones of the same references.
  A top_k feature's value (String) is the JSON text of its list, exactly as
  the lookup service writes it; a bucketed feature's (Map) an object from
  bucket to number, to a list of numbers (a bucketed last_k) or to a list
  of {"value", "count"} objects (a bucketed top_k).

Exits 1 with the first mismatches printed, 0 with a one-line summary.
"""
import json
import math
import sys

import pandas as pd
from feast import FeatureStore


def is_null(got):
    return got is None or got is pd.NA or (isinstance(got, float) and math.isnan(got))


def same(got, want):
    if want is None:
        return is_null(got)
    if isinstance(want, dict):
        # A bucketed feature (Map): the same buckets, each value as a
        # number is compared. Online the SDK gives a dict; offline pyarrow
        # turns an Arrow map<utf8, value> into a list of (key, value) pairs.
        if is_null(got) or isinstance(got, (str, bytes)):
            return False
        if not isinstance(got, dict):
            try:
                pairs = list(got)
                got = dict(pairs)
            except (TypeError, ValueError):
                return False
            if len(got) != len(pairs):
                return False
        return sorted(got) == sorted(want) and all(
            isinstance(k, str) and not is_null(got[k]) and same(got[k], want[k]) for k in want)
    if isinstance(want, list):
        # A list feature (Array(Float64), Array(String)): the same doubles
        # or strings in the same order, exactly (a list, or a numpy array
        # from a DataFrame).
        if is_null(got) or isinstance(got, (str, bytes)) or not hasattr(got, "__len__"):
            return False
        if want and isinstance(want[0], str):
            return len(got) == len(want) and all(isinstance(g, str) and g == w for g, w in zip(got, want))
        if want and isinstance(want[0], dict):
            # A bucketed top_k's bucket: {value, count} entries in order
            # (online dicts from Feast's MAP_LIST, offline from the Arrow
            # list<struct<value, count>>).
            return len(got) == len(want) and all(
                isinstance(g, dict) and sorted(g) == ["count", "value"] and same(g["value"], w["value"])
                and not is_null(g["count"]) and int(g["count"]) == w["count"] for g, w in zip(got, want))
        return len(got) == len(want) and all(float(g) == float(w) for g, w in zip(got, want))
    if is_null(got):
        return False
    if isinstance(want, str):
        # A string feature (String): the same string, exactly.
        return isinstance(got, str) and got == want
    if isinstance(want, int) and abs(want) >= 2**32:
        # A long (an event time in ms): exactly, as an Int64 field carries it.
        return float(got) == float(want) and float(got).is_integer()
    return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)


def main():
    repo, cases_path = sys.argv[1], sys.argv[2]
    with open(cases_path) as f:
        cases = json.load(f)
    store = FeatureStore(repo_path=repo)
    bad = []

    on = cases["online"]
    got = store.get_online_features(features=on["features"], entity_rows=on["rows"]).to_dict()
    for j, ref in enumerate(on["features"]):
        col = got[ref.split(":", 1)[1]]
        for i, row in enumerate(on["rows"]):
            if not same(col[i], on["expected"][i][j]):
                bad.append(f"online {row} {ref}: got {col[i]!r}, want {on['expected'][i][j]!r}")

    off = cases["offline"]
    entity_df = pd.DataFrame({
        "user_id": off["keys"],
        "event_timestamp": pd.to_datetime(off["times_ms"], unit="ms", utc=True),
        "row_id": list(range(len(off["keys"]))),
    })
    df = store.get_historical_features(entity_df=entity_df, features=off["features"]).to_df()
    if len(df) != len(entity_df):
        bad.append(f"offline: {len(df)} rows for {len(entity_df)} entity rows")
    else:
        df = df.sort_values("row_id").reset_index(drop=True)
        for j, ref in enumerate(off["features"]):
            name = ref.split(":", 1)[1]
            col = df[name].tolist()
            for i in range(len(col)):
                if not same(col[i], off["expected"][i][j]):
                    bad.append(f"offline row {i} ({off['keys'][i]} at {off['times_ms'][i]}) {ref}: "
                               f"got {col[i]!r}, want {off['expected'][i][j]!r}")
        if df["user_id"].tolist() != off["keys"]:
            bad.append("offline: the join keys came back changed")

    # full_feature_names=True: columns are view__name, online and offline.
    full_on = store.get_online_features(features=on["features"], entity_rows=on["rows"][:5],
                                        full_feature_names=True).to_dict()
    full_off = store.get_historical_features(entity_df=entity_df.head(20), features=off["features"],
                                             full_feature_names=True).to_df().sort_values("row_id")
    for j, ref in enumerate(on["features"]):
        name = ref.replace(":", "__")
        if name not in full_on or name not in full_off.columns:
            bad.append(f"full_feature_names: no column {name} (online {sorted(full_on)}, offline {list(full_off.columns)})")
            continue
        for i in range(5):
            if not same(full_on[name][i], on["expected"][i][j]):
                bad.append(f"online full name {name} row {i}: got {full_on[name][i]!r}, want {on['expected'][i][j]!r}")
        for i, v in enumerate(full_off[name].tolist()):
            if not same(v, off["expected"][i][j]):
                bad.append(f"offline full name {name} row {i}: got {v!r}, want {off['expected'][i][j]!r}")

    # The FeatureService: exactly its features, the brute force's values,
    # online (SDK 0.64+ sends its name, older SDKs its view:name refs) and
    # offline (its view:name refs), by name and with full_feature_names.
    svc = cases["service"]
    fs = store.get_feature_service(svc["name"])
    idx = [on["features"].index(ref) for ref in svc["features"]]
    for full in (False, True):
        names = [ref.replace(":", "__") if full else ref.split(":", 1)[1] for ref in svc["features"]]
        rows = on["rows"] if not full else on["rows"][:5]
        got = store.get_online_features(features=fs, entity_rows=rows, full_feature_names=full).to_dict()
        if sorted(got) != sorted(["user_id"] + names):
            bad.append(f"service online full={full}: columns {sorted(got)}, want user_id and {names}")
            continue
        for name, j in zip(names, idx):
            for i, row in enumerate(rows):
                if not same(got[name][i], on["expected"][i][j]):
                    bad.append(f"service online full={full} {row} {name}: got {got[name][i]!r}, want {on['expected'][i][j]!r}")
        edf = entity_df if not full else entity_df.head(20)
        sdf = store.get_historical_features(entity_df=edf, features=fs, full_feature_names=full).to_df()
        if sorted(sdf.columns) != sorted(list(edf.columns) + names) or len(sdf) != len(edf):
            bad.append(f"service offline full={full}: {len(sdf)} rows, columns {list(sdf.columns)}, "
                       f"want {len(edf)} rows, {list(edf.columns) + names}")
            continue
        sdf = sdf.sort_values("row_id").reset_index(drop=True)
        for name, j in zip(names, idx):
            for i, v in enumerate(sdf[name].tolist()):
                if not same(v, off["expected"][i][j]):
                    bad.append(f"service offline full={full} row {i} ({off['keys'][i]} at {off['times_ms'][i]}) {name}: "
                               f"got {v!r}, want {off['expected'][i][j]!r}")

    if bad:
        print(f"{len(bad)} mismatches, e.g.:", *bad[:20], sep="\n  ")
        sys.exit(1)
    import feast
    print(json.dumps({"feast": feast.__version__, "online_values": len(on["rows"]) * len(on["features"]),
                      "offline_rows": len(off["keys"]), "offline_values": len(off["keys"]) * len(off["features"]),
                      "service": svc["name"], "service_features": len(svc["features"])}))


if __name__ == "__main__":
    main()
