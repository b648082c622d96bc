package aggregations_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

// benchNow is a realistic wall clock (November 2023) in epoch milliseconds.
const benchNow = int64(1_700_000_000_000)

// benchEvents returns n events for window w at clock now: 95% in the two most recent
// hops, 5% late, anywhere in the window. Sequence numbers increase like offsets.
func benchEvents(w aggregations.Window, now int64, n int) []ev {
	rng := rand.New(rand.NewPCG(42, 42))
	events := make([]ev, n)
	for i := range events {
		age := rng.Int64N(2 * w.Hop)
		if rng.IntN(20) == 0 {
			age = rng.Int64N(w.Size)
		}
		events[i] = ev{TS: now - 1 - age, Seq: int64(i), Value: float64(rng.IntN(10000)) / 100}
	}
	return events
}

func reportRate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// BenchmarkApply measures the worker's hot path on a 30d/1d window.
func BenchmarkApply(b *testing.B) {
	w := aggregations.Window{Size: 30 * aggregations.Day, Hop: aggregations.Day}

	// Every event lands in an existing tile: the steady state of a busy entity.
	b.Run("existing-tiles", func(b *testing.B) {
		events := benchEvents(w, benchNow, 1<<14)
		var s aggregations.Series
		for _, e := range events {
			s.Apply(w, e, benchNow)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s.Apply(w, events[i&(len(events)-1)], benchNow)
		}
		reportRate(b, "events/s")
	})

	// The clock advances one minute per event, events are mostly current and 5% late,
	// a new tile opens every day and Expire runs at each tile boundary, as in a worker.
	b.Run("advancing-clock", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 1))
		var s aggregations.Series
		var removed []int64
		now := benchNow
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			now += aggregations.Minute
			e := ev{TS: now - 1 - rng.Int64N(aggregations.Minute), Seq: int64(i), Value: 1}
			if i%20 == 0 {
				e.TS = now - 1 - rng.Int64N(w.Size)
			}
			if now%aggregations.Day < aggregations.Minute {
				removed, _ = s.Expire(w, now, removed[:0])
			}
			s.Apply(w, e, now)
		}
		reportRate(b, "events/s")
	})
}

// BenchmarkApplyKind measures the worker's hot path per aggregation, on a 30d/1d
// window with every event landing in an existing tile (as existing-tiles above):
// the exact kinds share one IR and must not allocate; approx_distinct and
// approx_percentile also update their sketch, first_k and last_k (k = 100)
// their event list, top_k its value counts (10,000 distinct values in the
// events: past TopKExactMax per tile, so this measures the Misra-Gries
// summary with its purges; top_k-string counts 16 values, exactly).
func BenchmarkApplyKind(b *testing.B) {
	for _, k := range aggregations.Kinds() {
		b.Run(k.String(), func(b *testing.B) {
			w := aggregations.Window{Size: 30 * aggregations.Day, Hop: aggregations.Day}.For(k, 0.95).WithK(100)
			events := benchEvents(w, benchNow, 1<<14)
			var s aggregations.Series
			for _, e := range events {
				s.Apply(w, e, benchNow)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.Apply(w, events[i&(len(events)-1)], benchNow)
			}
			reportRate(b, "events/s")
		})
	}
	// The kinds that keep values, over a string field (WithStrings): the
	// events carry one of 16 merchant categories.
	for _, k := range []aggregations.Kind{aggregations.Last, aggregations.First, aggregations.FirstK, aggregations.LastK, aggregations.TopK} {
		b.Run(k.String()+"-string", func(b *testing.B) {
			w := aggregations.Window{Size: 30 * aggregations.Day, Hop: aggregations.Day}.For(k, 0).WithK(100).WithStrings()
			events := benchEvents(w, benchNow, 1<<14)
			for i := range events {
				events[i].Value, events[i].Str = 0, fmt.Sprintf("category-%02d", i%16)
			}
			var s aggregations.Series
			for _, e := range events {
				s.Apply(w, e, benchNow)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.Apply(w, events[i&(len(events)-1)], benchNow)
			}
			reportRate(b, "events/s")
		})
	}
	// Bucketed features (`bucket:`, WithBuckets): the events carry one of 16
	// merchant categories; each tile keeps a sub-IR per category.
	for _, k := range []aggregations.Kind{aggregations.Sum, aggregations.ApproxDistinct, aggregations.LastK} {
		b.Run(k.String()+"-bucketed", func(b *testing.B) {
			w := aggregations.Window{Size: 30 * aggregations.Day, Hop: aggregations.Day}.For(k, 0).WithK(100).WithBuckets()
			events := benchEvents(w, benchNow, 1<<14)
			for i := range events {
				events[i].Bucket = fmt.Sprintf("category-%02d", i%16)
			}
			var s aggregations.Series
			for _, e := range events {
				s.Apply(w, e, benchNow)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.Apply(w, events[i&(len(events)-1)], benchNow)
			}
			reportRate(b, "events/s")
		})
	}
}

// BenchmarkRead measures a lookup: fold one series as of the request time.
func BenchmarkRead(b *testing.B) {
	for _, tc := range []struct {
		name string
		w    aggregations.Window
	}{
		{"30d-1d", aggregations.Window{Size: 30 * aggregations.Day, Hop: aggregations.Day}},
		{"7d-1h", aggregations.Window{Size: 7 * aggregations.Day, Hop: aggregations.Hour}},
		{"30d-1d-approx_distinct", aggregations.Window{Size: 30 * aggregations.Day, Hop: aggregations.Day}.For(aggregations.ApproxDistinct, 0)},
		{"30d-1d-approx_percentile", aggregations.Window{Size: 30 * aggregations.Day, Hop: aggregations.Day}.For(aggregations.ApproxPercentile, 0.95)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var s aggregations.Series
			rng := rand.New(rand.NewPCG(7, 7))
			for i := range 10000 {
				s.Apply(tc.w, ev{TS: benchNow - 1 - rng.Int64N(tc.w.Size+tc.w.Hop), Seq: int64(i), Value: float64(rng.IntN(10000)) / 100}, benchNow)
			}
			s.Apply(tc.w, ev{TS: benchNow + 10, Seq: 1e6, Value: 1}, benchNow) // one pending event
			b.ReportMetric(float64(len(s.Tiles)), "tiles")
			var sink aggregations.IR
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sink = s.Read(tc.w, benchNow+int64(i&1023))
			}
			reportRate(b, "reads/s")
			if sink.Empty() {
				b.Fatal("empty read")
			}
		})
	}
}

// BenchmarkEncoding measures the per-write and per-lookup cost of a 30d/1d series
// stored as one value.
func BenchmarkEncoding(b *testing.B) {
	w := aggregations.Window{Size: 30 * aggregations.Day, Hop: aggregations.Day}
	var s aggregations.Series
	for _, e := range benchEvents(w, benchNow, 10000) {
		s.Apply(w, e, benchNow)
	}
	buf := aggregations.AppendSeries(nil, &s)
	b.Run("AppendSeries", func(b *testing.B) {
		b.ReportAllocs()
		b.ReportMetric(float64(len(buf)), "bytes")
		dst := make([]byte, 0, len(buf))
		for i := 0; i < b.N; i++ {
			dst = aggregations.AppendSeries(dst[:0], &s)
		}
	})
	b.Run("DecodeSeries", func(b *testing.B) {
		b.ReportAllocs()
		var d aggregations.Series
		for i := 0; i < b.N; i++ {
			if _, err := aggregations.DecodeSeries(buf, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
