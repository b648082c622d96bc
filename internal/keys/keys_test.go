package keys

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestFeatureLogKeyRoundTrip(t *testing.T) {
	for _, r := range []TileRef{
		{Entity: "user", EntityKey: "u1", FeatureID: "txn_avg@1", SourcePartition: 0, Start: 1_700_000_000_000},
		{Entity: "user", EntityKey: "", FeatureID: "f@2", SourcePartition: 7, Start: math.MinInt64},
		{Entity: "e", EntityKey: "with\x00nul", FeatureID: "f@1", SourcePartition: math.MaxInt32, Start: -5},
	} {
		k := AppendFeatureLog(nil, r)
		if want := 3 + len(r.Entity) + len(r.EntityKey) + len(r.FeatureID) + 4 + 8; len(k) != want {
			t.Fatalf("%+v: key of %d bytes, want %d (strings, u32 partition, u64 start)", r, len(k), want)
		}
		got, err := ParseFeatureLog(k)
		if err != nil || got != r {
			t.Fatalf("round trip %+v: got %+v, %v", r, got, err)
		}
	}
}

func TestFeatureLogKeysDifferBySourcePartition(t *testing.T) {
	a := AppendFeatureLog(nil, TileRef{"u", "k", "f@1", 0, 10})
	b := AppendFeatureLog(nil, TileRef{"u", "k", "f@1", 1, 10})
	if bytes.Equal(a, b) {
		t.Fatal("the tiles of two source partitions must have distinct keys: compaction would keep only one")
	}
}

func TestFeatureLogKeysSortByTileStart(t *testing.T) {
	a := AppendFeatureLog(nil, TileRef{"u", "k", "f@1", 2, -10})
	b := AppendFeatureLog(nil, TileRef{"u", "k", "f@1", 2, 10})
	c := AppendFeatureLog(nil, TileRef{"u", "k", "f@1", 2, math.MinInt64})
	if !(bytes.Compare(c, a) < 0 && bytes.Compare(a, b) < 0) {
		t.Fatal("tile starts must sort numerically, base first")
	}
}

func TestMalformedFeatureLogKeyIsAnError(t *testing.T) {
	negative := AppendFeatureLog(nil, TileRef{"u", "k", "f", 0, 1})
	negative[len(negative)-12] = 0x80 // partition < 0
	for _, k := range [][]byte{nil, {0xff}, {3, 'a'}, AppendFeatureLog(nil, TileRef{"u", "k", "f", 0, 1})[:5],
		AppendFeatureLog(nil, TileRef{"u", "k", "f", 0, 1})[:12], negative} {
		if _, err := ParseFeatureLog(k); !errors.Is(err, ErrMalformed) || errors.Is(err, ErrOldLayout) {
			t.Fatalf("%q: want ErrMalformed (not ErrOldLayout), got %v", k, err)
		}
	}
}

func TestOldLayoutFeatureLogKeyIsRecognised(t *testing.T) {
	// The layout before the source partition: the three strings, then u64(start ^ signbit).
	old := AppendFeatureLog(nil, TileRef{"user", "u1", "f@1", 0, 5})
	old = append(old[:len(old)-12], old[len(old)-8:]...)
	_, err := ParseFeatureLog(old)
	if !errors.Is(err, ErrOldLayout) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("old-layout key: want ErrOldLayout and ErrMalformed, got %v", err)
	}
}

func TestStateKeysOfAPartitionAreOneRange(t *testing.T) {
	lo, hi := StatePartition("tx", 3)
	in := State(nil, "tx", 3, "zzz")
	for _, out := range [][]byte{State(nil, "tx", 2, "zzz"), State(nil, "tx", 4, ""), State(nil, "tx2", 3, "a"), Offset("tx", 3)} {
		if bytes.Compare(out, lo) >= 0 && bytes.Compare(out, hi) < 0 {
			t.Fatalf("key %q must be outside the range of tx/3", out)
		}
	}
	if !(bytes.Compare(in, lo) >= 0 && bytes.Compare(in, hi) < 0) {
		t.Fatal("state key of tx/3 must be inside its range")
	}
	if k, err := EntityKeyFromState(in); err != nil || k != "zzz" {
		t.Fatalf("entity key: %q %v", k, err)
	}
}

func TestOffsetValueRoundTrip(t *testing.T) {
	if v, err := U64(PutU64(123456789)); err != nil || v != 123456789 {
		t.Fatalf("got %d %v", v, err)
	}
	if _, err := U64([]byte{1, 2}); !errors.Is(err, ErrMalformed) {
		t.Fatal("short offset must be malformed")
	}
}

func TestRangeRoundTrip(t *testing.T) {
	next, end, err := Range(PutRange(5, 900))
	if err != nil || next != 5 || end != 900 {
		t.Fatalf("got %d %d %v", next, end, err)
	}
	if _, _, err := Range([]byte{1}); !errors.Is(err, ErrMalformed) {
		t.Fatal("short range must be malformed")
	}
}

func TestFeatureKeysDoNotCollideWithState(t *testing.T) {
	lo, hi := StatePartition("tx", 0)
	for _, k := range [][]byte{FeatureKnown("tx", 0, "f@1"), Bootstrap("tx", 0, "f@1"), Republish("tx", 0, "f@1")} {
		if bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0 {
			t.Fatalf("%q falls in the state range", k)
		}
	}
}

func TestSeenFeatureIDIsReservedAndRoundTrips(t *testing.T) {
	id := SeenFeatureID("transactions")
	if !IsSeen([]byte(id)) || !IsSeenID(id) {
		t.Fatalf("%q is not recognised as a marker id", id)
	}
	for _, f := range []string{"txn_count_7d@1", "seen:transactions", "", "\x00see"} {
		if IsSeen([]byte(f)) || IsSeenID(f) {
			t.Errorf("%q taken for a marker id", f)
		}
	}
	k := AppendFeatureLog(nil, TileRef{Entity: "user", EntityKey: "u1", FeatureID: id, Start: math.MinInt64})
	r, err := ParseFeatureLog(k)
	if err != nil || r.FeatureID != id || r.Start != math.MinInt64 {
		t.Fatalf("marker key round trip: %+v, %v", r, err)
	}
}

func TestStateEntityKeyAliasesTheKeyAndRejectsMalformedOnes(t *testing.T) {
	k := State(nil, "transactions", 7, "user-1")
	got, err := StateEntityKey(k)
	if err != nil || string(got) != "user-1" || &got[0] != &k[len(k)-len("user-1")] {
		t.Fatalf("StateEntityKey = %q, %v; want user-1 aliasing the key", got, err)
	}
	if got, err := StateEntityKey(State(nil, "t", 0, "")); err != nil || len(got) != 0 {
		t.Fatalf("empty entity key: %q, %v", got, err)
	}
	long := State(nil, "t", 0, "")
	for name, bad := range map[string][]byte{
		"empty":                 nil,
		"not a state key":       View(nil, "user", "u1"),
		"topic longer than key": {prefixState, 200, 't'},
		"huge topic length":     append([]byte{prefixState}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		"no partition":          long[:len(long)-1],
	} {
		if _, err := StateEntityKey(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestStatsHourKeysSortByHourAndRoundTrip(t *testing.T) {
	h := int64(1_700_000_000_000) / 3_600_000 * 3_600_000
	a, b := StatsHour(h, "zzz@9"), StatsHour(h+3_600_000, "a@1")
	if bytes.Compare(a, b) >= 0 {
		t.Fatal("statistics hours must sort by hour first")
	}
	lo, hi := StatsHoursBefore(h + 3_600_000)
	if bytes.Compare(lo, a) > 0 || bytes.Compare(a, hi) >= 0 || bytes.Compare(b, hi) < 0 {
		t.Fatal("StatsHoursBefore must hold the earlier hour only")
	}
	all0, all1 := StatsHours()
	if bytes.Compare(all0, b) > 0 || bytes.Compare(b, all1) >= 0 {
		t.Fatal("StatsHours must hold every hour")
	}
	if hour, id, err := ParseStatsHour(a); err != nil || hour != h || id != "zzz@9" {
		t.Fatalf("round trip: %d %q %v", hour, id, err)
	}
	for _, k := range [][]byte{State(nil, "t", 0, "k"), Offset("t", 0), {prefixStatsHour}} {
		if _, _, err := ParseStatsHour(k); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q parsed as a statistics hour key", k)
		}
	}
}

func TestViewBoundsHoldEveryViewKeyAndNothingElse(t *testing.T) {
	lower, upper := ViewBounds()
	in := func(k []byte) bool { return string(k) >= string(lower) && string(k) < string(upper) }
	for _, k := range [][]byte{View(nil, "user", "u1"), View(nil, "", ""), View(nil, "\xff\xff", "\xff")} {
		if !in(k) {
			t.Errorf("view key %q outside [%q, %q)", k, lower, upper)
		}
	}
	if in(ViewLogOffset("featurepipe.features", 3)) {
		t.Error("a view's feature-log offset key is inside the view bounds")
	}
}
