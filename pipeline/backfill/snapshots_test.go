package backfill

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/snapshot"
)

func TestSnapshotUsable(t *testing.T) {
	const day = int64(24 * time.Hour / time.Millisecond)
	const hour = int64(time.Hour / time.Millisecond)
	minT := time.Date(2026, 3, 10, 12, 30, 0, 0, time.UTC).UnixMilli()
	w30d := aggregations.Window{Size: 30 * day, Hop: day}
	w1h := aggregations.Window{Size: hour, Hop: 5 * 60 * 1000}
	life := aggregations.Window{Size: 0, Hop: day}
	feats := []SnapshotFeature{
		{ID: "avg_30d@1", Hash: "h-avg", Window: w30d},
		{ID: "count_1h@1", Hash: "h-count", Window: w1h},
		{ID: "count_life@1", Hash: "h-life", Window: life},
	}
	// good is a snapshot taken an hour before the earliest spine time, whose
	// newest event is a minute before it.
	good := func() (*snapshot.Manifest, snapshot.SourcePartition, SnapshotNeeds) {
		m := &snapshot.Manifest{ID: "s1", CreatedAt: time.UnixMilli(minT - hour).UTC(), Features: []snapshot.FeatureRef{
			{ID: "avg_30d@1", Hash: "h-avg"}, {ID: "count_1h@1", Hash: "h-count"}, {ID: "count_life@1", Hash: "h-life"}, {ID: "other@1", Hash: "x"},
		}}
		sp := snapshot.SourcePartition{Topic: "t", Partition: 0, NextOffset: 500, MaxEventTime: minT - 60_000, File: "t-0.sst"}
		return m, sp, SnapshotNeeds{MinT: minT, Features: feats, LogStart: 100, End: 900}
	}
	cases := []struct {
		name   string
		reason string // in the error of a refusal; "" when usable
		change func(m *snapshot.Manifest, sp *snapshot.SourcePartition, n *SnapshotNeeds)
		usable bool
	}{
		{"events before and taken before the earliest spine time is usable", "", func(*snapshot.Manifest, *snapshot.SourcePartition, *SnapshotNeeds) {}, true},
		{"an event exactly at the earliest spine time refuses it", "not before", func(_ *snapshot.Manifest, sp *snapshot.SourcePartition, _ *SnapshotNeeds) {
			sp.MaxEventTime = minT
		}, false},
		{"an event one millisecond before the earliest spine time is fine", "", func(m *snapshot.Manifest, sp *snapshot.SourcePartition, _ *SnapshotNeeds) {
			sp.MaxEventTime = minT - 1
		}, true},
		{"an empty snapshot partition is usable", "", func(_ *snapshot.Manifest, sp *snapshot.SourcePartition, _ *SnapshotNeeds) {
			sp.MaxEventTime = -1
		}, true},
		{"taken exactly at the earliest spine time is usable", "", func(m *snapshot.Manifest, _ *snapshot.SourcePartition, _ *SnapshotNeeds) {
			m.CreatedAt = time.UnixMilli(minT)
		}, true},
		{"taken after the earliest spine time refuses it (arrivals unknown)", "after the earliest spine time", func(m *snapshot.Manifest, _ *snapshot.SourcePartition, n *SnapshotNeeds) {
			m.CreatedAt = time.UnixMilli(minT + 1)
			n.Features = feats[2:] // lifetime only: no horizon to fail first
		}, false},
		{"a finite window whose tiles the worker may have expired refuses it", "expired tiles", func(m *snapshot.Manifest, _ *snapshot.SourcePartition, n *SnapshotNeeds) {
			m.CreatedAt = time.UnixMilli(minT + 3*hour)
			n.Features = feats[1:2]
		}, false},
		{"a requested feature missing from the snapshot refuses it", "no state of feature avg_30d@1", func(m *snapshot.Manifest, _ *snapshot.SourcePartition, _ *SnapshotNeeds) {
			m.Features = m.Features[1:]
		}, false},
		{"a requested feature with another definition refuses it", "count_1h@1 has another definition", func(m *snapshot.Manifest, _ *snapshot.SourcePartition, _ *SnapshotNeeds) {
			m.Features[1].Hash = "changed"
		}, false},
		{"features not requested do not matter", "", func(m *snapshot.Manifest, _ *snapshot.SourcePartition, n *SnapshotNeeds) {
			m.Features = m.Features[2:3]
			n.Features = feats[2:3]
		}, true},
		{"next offset before the log start refuses it (records lost in between)", "the log starts at 100", func(_ *snapshot.Manifest, sp *snapshot.SourcePartition, _ *SnapshotNeeds) {
			sp.NextOffset = 99
		}, false},
		{"next offset at the log start is usable", "", func(_ *snapshot.Manifest, sp *snapshot.SourcePartition, _ *SnapshotNeeds) {
			sp.NextOffset = 100
		}, true},
		{"next offset at the end offset is usable (nothing to replay)", "", func(_ *snapshot.Manifest, sp *snapshot.SourcePartition, _ *SnapshotNeeds) {
			sp.NextOffset = 900
		}, true},
		{"next offset past the end offset refuses it (topic recreated)", "after the end offset", func(_ *snapshot.Manifest, sp *snapshot.SourcePartition, _ *SnapshotNeeds) {
			sp.NextOffset = 901
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, sp, n := good()
			tc.change(m, &sp, &n)
			err := SnapshotUsable(m, sp, n)
			if tc.usable && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.usable && (!errors.Is(err, ErrSnapshotUnusable) || !strings.Contains(err.Error(), tc.reason)) {
				t.Fatalf("got %v, want an error wrapping ErrSnapshotUnusable saying %q", err, tc.reason)
			}
		})
	}
}

// TestHorizonFollowsFromCreatedAt checks the invariant the package doc
// relies on: a snapshot taken at or before T_min expired nothing a read at
// T_min needs, for every finite window.
func TestHorizonFollowsFromCreatedAt(t *testing.T) {
	const minute = int64(60_000)
	minT := int64(1_773_000_000_000)
	for _, w := range []aggregations.Window{{Size: 5 * minute, Hop: 5 * minute}, {Size: 60 * minute, Hop: 5 * minute},
		{Size: 7 * 1440 * minute, Hop: 360 * minute}, {Size: 30 * 1440 * minute, Hop: 1440 * minute}} {
		for _, created := range []int64{minT, minT - 1, minT - 7*minute, minT - 1440*minute} {
			if h, s := w.Horizon(created), w.Start(minT); h > s {
				t.Errorf("window %s taken %dms before T_min: horizon %d > window start %d", w, minT-created, h, s)
			}
		}
	}
}

func TestMergeSeriesIsTheUnion(t *testing.T) {
	for _, w := range []aggregations.Window{
		{Size: 0, Hop: 10},
		aggregations.Window{Size: 0, Hop: 10}.For(aggregations.ApproxDistinct, 0),
		aggregations.Window{Size: 0, Hop: 10}.For(aggregations.ApproxPercentile, 0.5),
	} {
		testMergeSeriesIsTheUnion(t, w)
	}
}

func testMergeSeriesIsTheUnion(t *testing.T, w aggregations.Window) {
	// Two partitions' state of one entity, built by workers with clock 30:
	// events from 33 on are pending, tile 0 of a is folded into its Base.
	const clock = 30
	var a, b aggregations.Series
	var all []aggregations.Event
	for i, ts := range []int64{1, 5, 12, 15, 25, 27, 33, 35, 40, 44} {
		e := aggregations.Event{TS: ts, Seq: int64(i), Value: float64(i + 1)}
		all = append(all, e)
		dst := &a
		if i%2 == 1 {
			dst = &b
		}
		dst.Apply(w, e, clock)
	}
	a.Expire(w, clock, nil)
	if a.Base.Empty() {
		t.Fatal("setup: a has no Base")
	}
	mergeSeries(&a, &b)
	// Exact for reads at T at or after the clock.
	for _, T := range []int64{30, 34, 36, 41, 45, 100} {
		for _, k := range []aggregations.Kind{aggregations.Count, aggregations.Sum, aggregations.Last, aggregations.First, aggregations.Variance,
			aggregations.ApproxDistinct, aggregations.ApproxPercentile} {
			if k.Approximate() && w != w.For(k, w.Percentile()) {
				continue // this window keeps another sketch
			}
			got, gok := aggregations.Finalize(k, a.Read(w, T))
			want, wok := aggtest.BruteForce(k, w, all, T)
			if !aggtest.Within(k, got, want) || gok != wok {
				t.Errorf("%v as of %d: got %v,%v want %v,%v", k, T, got, gok, want, wok)
			}
		}
	}
}
