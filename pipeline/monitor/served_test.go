package monitor

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// checkBruteForce compares s with the statistics computed directly from
// values (nil: null): counts exactly, moments to rounding, quantiles within
// the sketch's 1% of the value at rank floor(q*(n-1)) of the sorted values.
func checkBruteForce(t *testing.T, what string, s *Stats, values []*float64) {
	t.Helper()
	var xs []float64
	for _, v := range values {
		if v != nil {
			xs = append(xs, *v)
		}
	}
	if s == nil {
		if len(values) > 0 {
			t.Errorf("%s: no statistics, want %d values", what, len(values))
		}
		return
	}
	sum := s.Summary()
	if sum.Count != int64(len(values)) || sum.Nulls != int64(len(values)-len(xs)) {
		t.Errorf("%s: count %d nulls %d, want %d and %d", what, sum.Count, sum.Nulls, len(values), len(values)-len(xs))
		return
	}
	if len(xs) == 0 {
		return
	}
	slices.Sort(xs)
	mean, m2 := 0.0, 0.0
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		m2 += (x - mean) * (x - mean)
	}
	sd := 0.0
	if len(xs) > 1 {
		sd = math.Sqrt(m2 / float64(len(xs)-1))
	}
	if !near(*sum.Mean, mean, 1e-9*(1+math.Abs(mean))) || !near(*sum.Stddev, sd, 1e-9*(1+sd)) ||
		*sum.Min != xs[0] || *sum.Max != xs[len(xs)-1] {
		t.Errorf("%s: mean %v stddev %v min %v max %v, want %v %v %v %v", what, *sum.Mean, *sum.Stddev, *sum.Min, *sum.Max, mean, sd, xs[0], xs[len(xs)-1])
	}
	for _, q := range Quantiles {
		name := fmt.Sprintf("p%d", int(math.Round(q*100)))
		want := xs[int(q*float64(len(xs)-1))]
		if got := sum.Quantiles[name]; !near(got, want, RelativeAccuracy*math.Abs(want)+1e-12) {
			t.Errorf("%s: %s %v, want %v within 1%%", what, name, got, want)
		}
	}
}

func entry(consumer string, at int64, vals map[string]*float64) *lookuplog.Entry {
	return &lookuplog.Entry{Entity: "user", Key: "k", At: at, Consumer: consumer, Features: vals}
}

// TestServedPerConsumerAndWindow: each consumer's served values, per
// window by request time, match the statistics computed directly from the
// values it was served.
func TestServedPerConsumerAndWindow(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s, err := NewServed(ServedOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type key struct {
		consumer string
		window   time.Duration
	}
	want := map[key][]*float64{}
	for i := range 3000 {
		consumer := []string{"fraud-api", "ranking", ""}[i%3]
		var v *float64
		if rng.IntN(10) > 0 {
			x := 1 + rng.Float64()*100
			if consumer == "ranking" {
				x = 1000 + rng.ExpFloat64()*50 // another population
			}
			v = &x
		}
		age := time.Duration(rng.Int64N(int64(30 * time.Hour)))
		if i%7 == 0 {
			age = -time.Minute // a clock ahead counts as now
		}
		s.Add(entry(consumer, now.Add(-age).UnixMilli(), map[string]*float64{"a@1": v}))
		if consumer == "" {
			consumer = AnonymousConsumer
		}
		for _, w := range DefaultServedWindows {
			if age <= w {
				want[key{consumer, w}] = append(want[key{consumer, w}], v)
			}
		}
	}
	if got := s.Consumers("a@1"); fmt.Sprint(got) != "[anonymous fraud-api ranking]" {
		t.Fatalf("consumers %v", got)
	}
	for k, vs := range want {
		checkBruteForce(t, fmt.Sprintf("%s over %s", k.consumer, k.window), s.Stats("a@1", k.consumer, k.window), vs)
	}
	if s.Stats("a@1", "fraud-api", time.Hour).Count() >= s.Stats("a@1", "fraud-api", 24*time.Hour).Count() {
		t.Errorf("the 1h window has as many values as the 24h one")
	}
	if s.Stats("a@1", "nobody", time.Hour) != nil || s.Stats("b@1", "fraud-api", time.Hour) != nil || s.Stats("a@1", "fraud-api", time.Minute) != nil {
		t.Errorf("statistics for a consumer, version or window never served")
	}
}

// TestServedBoundsConsumers: consumers beyond MaxConsumers share "other",
// whose statistics are those of all their values.
func TestServedBoundsConsumers(t *testing.T) {
	now := time.Now()
	s, err := NewServed(ServedOptions{Now: now, MaxConsumers: 2})
	if err != nil {
		t.Fatal(err)
	}
	var other []*float64
	for i := range 10 {
		v := float64(i)
		s.Add(entry(fmt.Sprintf("c%d", i), now.UnixMilli(), map[string]*float64{"a@1": &v}))
		if i >= 2 {
			other = append(other, &v)
		}
	}
	if got := s.Consumers("a@1"); fmt.Sprint(got) != "[c0 c1 other]" {
		t.Fatalf("consumers %v, want [c0 c1 other]", got)
	}
	checkBruteForce(t, "other", s.Stats("a@1", OtherConsumers, time.Hour), other)
}

func TestServedSampleAndOptions(t *testing.T) {
	now := time.Now()
	s, err := NewServed(ServedOptions{Now: now, Sample: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	for range 4000 {
		v := 1.0
		s.Add(entry("c", now.UnixMilli(), map[string]*float64{"a@1": &v}))
	}
	// Binomial(4000, 0.25): mean 1000, sd 27; 10 sd either way.
	if n := s.Stats("a@1", "c", time.Hour).Count(); n < 730 || n > 1270 {
		t.Errorf("sampled %d of 4000 at 0.25", n)
	}
	for _, o := range []ServedOptions{{Sample: 1.5}, {Sample: -1}, {Windows: []time.Duration{time.Hour, 0}}} {
		if _, err := NewServed(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestCheckServed: a consumer served shifted values crosses the PSI
// threshold, one served the baseline's distribution does not.
func TestCheckServed(t *testing.T) {
	now := time.Now()
	s, _ := NewServed(ServedOptions{Now: now})
	base := NewStats()
	for i := range 1000 {
		base.AddValue(float64(i % 100))
		same, shifted := float64(i%100), float64(50+i%100)
		s.Add(entry("same", now.UnixMilli(), map[string]*float64{"a@1": &same}))
		s.Add(entry("shifted", now.Add(-2*time.Hour).UnixMilli(), map[string]*float64{"a@1": &shifted}))
	}
	reps := CheckServed("a@1", s, &Baseline{Name: "train@1", Stats: base}, Thresholds{PSI: 0.2, NullRate: 0.05}, MinValues)
	var got []string
	for _, r := range reps {
		got = append(got, fmt.Sprintf("%s/%s/%v", r.Consumer, r.Window, r.Crossed))
		if r.Baseline != "train@1" || r.PSI == nil || r.KS == nil {
			t.Errorf("%+v: no drift against train@1", r)
		}
	}
	// "shifted" was served 2h ago: only in the 24h window.
	if fmt.Sprint(got) != "[same/1h0m0s/[] same/24h0m0s/[] shifted/24h0m0s/[psi]]" {
		t.Fatalf("reports %v", got)
	}
	if row := reps[2].Row(); row[0] != "  served to shifted (24h)" || row[1] != "1000" {
		t.Errorf("row %q", row)
	}
}

// TestServedLists: the lists served (lookup-log "lists") get list
// statistics per consumer and window, those of the lists themselves; a
// null list counts as a null.
func TestServedLists(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s, err := NewServed(ServedOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	want := map[string]*Stats{"fraud-api": NewStats(), "ranking": NewStats()}
	for i := range 500 {
		consumer := []string{"fraud-api", "ranking"}[i%2]
		var l []float64
		for range rng.IntN(4) {
			l = append(l, float64(rng.IntN(5))+float64(i%2)*10)
		}
		if rng.IntN(10) == 0 {
			l = nil
		}
		e := entry(consumer, now.Add(-time.Minute).UnixMilli(), map[string]*float64{})
		e.Lists = map[string][]float64{"l@1": l}
		s.Add(e)
		want[consumer].AddList(l, l != nil)
	}
	for c, w := range want {
		got := s.Stats("l@1", c, time.Hour)
		if got == nil || !reflect.DeepEqual(got.Summary(), w.Summary()) {
			t.Errorf("%s: served list statistics %+v, want %+v", c, got, w.Summary())
			continue
		}
		if sum := got.Summary(); sum.Kind != KindList || sum.Nulls == 0 || len(sum.Top) == 0 {
			t.Errorf("%s: %+v: want list statistics with nulls and top values", c, sum)
		}
	}
	if top, _ := s.Stats("l@1", "ranking", 24*time.Hour).Top(1); top[0].Value < "10" {
		t.Errorf("ranking's top element %v, want one of 10-14", top)
	}
}

// TestServedStrings: the strings and string lists served (lookup-log
// "strings", "string_lists") get string statistics (top values) and list
// statistics (lengths, top elements) per consumer; a null counts as a null.
func TestServedStrings(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s, err := NewServed(ServedOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	live := NewServedLive(ServedLiveOptions{Now: func() time.Time { return now }})
	wantS, wantL := NewStats(), NewStats()
	merchants := []string{"atm", "grocery", "café", ""}
	for i := range 200 {
		var v *string
		if i%7 != 0 {
			m := merchants[i%len(merchants)]
			if i%3 == 0 {
				m = "atm"
			}
			v = &m
		}
		l := []string{merchants[i%4], "atm"}
		if i%9 == 0 {
			l = nil
		}
		e := entry("fraud-api", now.Add(-time.Minute).UnixMilli(), map[string]*float64{})
		e.Strings = map[string]*string{"m@1": v}
		e.StringLists = map[string][]string{"ms@1": l}
		s.Add(e)
		live.Add(e)
		if v == nil {
			wantS.AddNull()
		} else {
			wantS.AddString(*v, true)
		}
		wantL.AddStringList(l, l != nil)
	}
	for id, w := range map[string]*Stats{"m@1": wantS, "ms@1": wantL} {
		got := s.Stats(id, "fraud-api", time.Hour)
		if got == nil || !reflect.DeepEqual(got.Summary(), w.Summary()) {
			t.Fatalf("%s: served statistics %+v, want %+v", id, got, w.Summary())
		}
		sum := got.Summary()
		if sum.Nulls == 0 || len(sum.Top) == 0 || sum.Top[0].Value != "atm" {
			t.Errorf("%s: %+v: want nulls and atm the top value", id, sum)
		}
	}
	if k := s.Stats("m@1", "fraud-api", time.Hour).Kind(); k != KindString {
		t.Errorf("m@1 kind %q, want string", k)
	}
	if sum := s.Stats("ms@1", "fraud-api", time.Hour).Summary(); sum.Kind != KindList || sum.Length == nil || *sum.Length.Max != 2 {
		t.Errorf("ms@1: %+v: want lists of 2", sum)
	}
	if got := live.Stats("m@1", "fraud-api", time.Hour); got == nil || got.Summary().Top[0].Value != "atm" {
		t.Errorf("ServedLive m@1: %+v, want atm the top value", got)
	}
}

// TestServedBucketsAndTops: bucketed and top_k values served (lookup-log
// "buckets", "bucket_strings", "tops", "bucket_lists",
// "bucket_string_lists", "bucket_tops") get the list statistics the
// baseline keeps of them (the workers' addBucketStats, backfill's
// bucketStats and topStats): a map as the list of its non-null bucket
// values, a top_k value as its values without the counts, a bucketed list
// or top_k as its buckets' elements in key order; a null is a null. The same for
// Served, ServedLive.Add and a record decoded by a lookuplog.Decoder.
func TestServedBucketsAndTops(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s, err := NewServed(ServedOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	live := NewServedLive(ServedLiveOptions{Now: func() time.Time { return now }})
	decoded := NewServedLive(ServedLiveOptions{Now: func() time.Time { return now }})
	var dec lookuplog.Decoder
	var rec lookuplog.Record
	want := map[string]*Stats{"b@1": NewStats(), "bs@1": NewStats(), "t@1": NewStats(), "ts@1": NewStats(), "tb@1": NewStats(),
		"bl@1": NewStats(), "bsl@1": NewStats(), "bt@1": NewStats()}
	f := func(x float64) *float64 { return &x }
	str := func(x string) *string { return &x }
	for i := range 120 {
		e := entry("fraud-api", now.Add(-time.Minute).UnixMilli(), map[string]*float64{})
		e.Buckets = map[string]map[string]*float64{"b@1": {"EUR": f(float64(i)), "USD": nil, "__other__": f(2)}}
		e.BucketStrings = map[string]map[string]*string{"bs@1": {"EUR": str("m-1"), "GBP": str(fmt.Sprint("m-", i%3))}}
		e.Tops = map[string]*lookuplog.ServedTop{
			"t@1":  {Value: json.RawMessage(fmt.Sprintf(`[{"value":%d,"count":3},{"value":7.5,"count":1}]`, i%4))},
			"ts@1": {Value: json.RawMessage(`[{"value":"atm","count":2}]`)},
			"tb@1": {Value: json.RawMessage(`[{"value":true,"count":2},{"value":false,"count":1}]`)},
		}
		e.BucketLists = map[string]map[string][]float64{"bl@1": {"USD": {float64(i), 1}, "EUR": {5}, "GBP": nil}}
		e.BucketStringLists = map[string]map[string][]string{"bsl@1": {"b": {"m-2"}, "a": {"m-1", "m-0"}}}
		e.BucketTops = map[string]map[string]*lookuplog.ServedTop{"bt@1": {
			"b": {Value: json.RawMessage(`[{"value":4,"count":2}]`)}, "a": {Value: json.RawMessage(fmt.Sprintf(`[{"value":%d,"count":1}]`, i%3))}}}
		null := i%10 == 0 // null values
		if null {
			e.Buckets["b@1"], e.BucketStrings["bs@1"], e.Tops["t@1"] = nil, nil, nil
			e.BucketLists["bl@1"], e.BucketTops["bt@1"] = nil, nil
		}
		want["bl@1"].AddList([]float64{5, float64(i), 1}, !null) // EUR, GBP (null), USD
		want["bsl@1"].AddStringList([]string{"m-1", "m-0", "m-2"}, true)
		want["bt@1"].AddList([]float64{float64(i % 3), 4}, !null)
		want["b@1"].AddList([]float64{float64(i), 2}, !null) // EUR, __other__ (key order); USD null
		want["bs@1"].AddStringList([]string{"m-1", fmt.Sprint("m-", i%3)}, !null)
		want["t@1"].AddList([]float64{float64(i % 4), 7.5}, !null)
		want["ts@1"].AddStringList([]string{"atm"}, true)
		want["tb@1"].AddList([]float64{1, 0}, true)
		s.Add(e)
		live.Add(e)
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if err := dec.Decode(b, &rec); err != nil {
			t.Fatal(err)
		}
		decoded.AddRecord(&rec)
	}
	for id, w := range want {
		for name, got := range map[string]*Stats{
			"Served": s.Stats(id, "fraud-api", time.Hour), "ServedLive": live.Stats(id, "fraud-api", time.Hour),
			"decoded": decoded.Stats(id, "fraud-api", time.Hour),
		} {
			if got == nil {
				t.Errorf("%s %s: no statistics, want %+v", name, id, w.Summary())
			} else if !reflect.DeepEqual(got.Summary(), w.Summary()) {
				t.Errorf("%s %s: %+v, want %+v", name, id, got.Summary(), w.Summary())
			}
		}
	}
	if sum := s.Stats("b@1", "fraud-api", time.Hour).Summary(); sum.Kind != KindList || sum.Nulls != 12 || *sum.Length.Max != 2 {
		t.Errorf("b@1: %+v: want lists of 2 buckets, 12 null maps", sum)
	}
}
