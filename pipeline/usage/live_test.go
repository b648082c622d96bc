package usage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

func withRequest(es []*lookuplog.Entry, id string) []*lookuplog.Entry {
	for _, e := range es {
		e.Request = id
	}
	return es
}

func TestLiveCountsKeysAndRequestsPerHour(t *testing.T) {
	l := NewLive()
	add := func(es []*lookuplog.Entry) {
		for _, e := range es {
			l.Add(e)
		}
	}
	three := []string{"u1", "u2", "u3"}
	add(withRequest(request("fraud-api", "", 10*time.Minute, three, "a@1", "b@1"), "r1")) // this hour: 3 keys, 1 lookup
	add(withRequest(request("fraud-api", "", 20*time.Minute, []string{"u4"}, "a@1"), "r2"))
	add(request("", "", 3*time.Hour, []string{"u1", "u2"}, "a@1")) // no request id: one request; anonymous
	add(request("batch", "", 9*Day, []string{"u9"}, "a@1"))        // older than the ring: last use and retained only

	asOf := now.Add(-time.Minute) // the entries of the last 20 minutes fall in this clock hour
	st := l.Stats("a@1", asOf, 24)
	if st == nil {
		t.Fatal("no stats for a@1")
	}
	if st.Total.Keys != 6 || st.Total.Lookups != 3 {
		t.Errorf("24h total: %d keys, %d lookups; want 6 keys, 3 lookups", st.Total.Keys, st.Total.Lookups)
	}
	if got := st.Total.Hours[23]; got.Keys != 4 || got.Lookups != 2 || !got.Hour.Equal(asOf.Truncate(time.Hour)) {
		t.Errorf("current hour: %+v; want 4 keys, 2 lookups at %v", got, asOf.Truncate(time.Hour))
	}
	if got := st.Total.Hours[21]; got.Keys != 2 || got.Lookups != 1 {
		t.Errorf("3 hours ago: %+v; want 2 keys, 1 lookup", got)
	}
	if st.Total.KeysRetained != 7 {
		t.Errorf("retained keys %d, want 7 (the 9-day-old key too)", st.Total.KeysRetained)
	}
	names := []string{}
	for _, c := range st.Consumers {
		names = append(names, fmt.Sprintf("%s:%d", c.Consumer, c.Keys))
	}
	if fmt.Sprint(names) != "[fraud-api:4 anonymous:2 batch:0]" {
		t.Errorf("consumers %v; want [fraud-api:4 anonymous:2 batch:0] (most keys first)", names)
	}
	sum := l.Summaries(asOf)["b@1"]
	if sum.Keys24h != 3 || sum.Lookups24h != 1 {
		t.Errorf("b@1 summary %+v; want 3 keys, 1 lookup", sum)
	}
	if l.ConsumerKeys()["a@1"]["batch"] != 1 {
		t.Errorf("consumer keys %v; want batch:1 for a@1", l.ConsumerKeys()["a@1"])
	}
	// A week later, the hour buckets have slid out of the window.
	later := now.Add(8 * Day)
	if st := l.Stats("a@1", later, LiveHours); st.Total.Keys != 0 {
		t.Errorf("a week later: %d keys in the window, want 0", st.Total.Keys)
	}
	// A new entry in a reused slot clears what the slot held.
	add(withRequest(request("fraud-api", "", -LiveHours*time.Hour+30*time.Minute, []string{"u1"}, "a@1"), "r3"))
	if st := l.Stats("a@1", asOf.Add(LiveHours*time.Hour), 1); st.Total.Keys != 1 {
		t.Errorf("reused slot: %d keys, want 1 (the old hour's 4 cleared)", st.Total.Keys)
	}
}

// Live counts what Aggregator counts: a request once per version however
// its keys interleave with other requests' (one FIFO entry per request id),
// and entries without a request id per (entity, consumer, service, time)
// and version.
func TestLiveCountsLikeTheAggregator(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var all []*lookuplog.Entry
	for r := range 300 {
		feats := [][]string{{"a@1", "b@1"}, {"a@1"}, {"c@2", "a@1", "b@1"}}[rng.IntN(3)]
		var keys []string
		for k := range 1 + rng.IntN(4) {
			keys = append(keys, fmt.Sprintf("u%d", k))
		}
		es := request([]string{"x", "y", ""}[rng.IntN(3)], "", time.Duration(1+rng.IntN(50))*time.Minute, keys, feats...) // within the clock hour before now
		if rng.IntN(4) > 0 {
			withRequest(es, fmt.Sprintf("replica-%d", r))
		}
		all = append(all, es...)
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	l := NewLive()
	for _, e := range all {
		l.Add(e)
	}
	want := aggregate(all)
	asOf := now.Add(-time.Minute)
	for id, st := range want {
		got := l.Stats(id, asOf, 24)
		if got == nil {
			t.Fatalf("%s: no live stats", id)
		}
		w := st.Windows.Day
		if got.Total.Keys != w.Keys || got.Total.Lookups != w.Lookups {
			t.Errorf("%s: live %d keys %d lookups, aggregator %d keys %d lookups", id, got.Total.Keys, got.Total.Lookups, w.Keys, w.Lookups)
		}
	}
}

func TestLiveBoundsConsumers(t *testing.T) {
	l := NewLive()
	for i := range MaxLiveConsumers + 5 {
		l.Add(&lookuplog.Entry{Entity: "user", Key: "u", At: now.UnixMilli(), Consumer: fmt.Sprintf("c%02d", i),
			Request: fmt.Sprint(i), Features: map[string]*float64{"a@1": nil}})
	}
	st := l.Stats("a@1", now, 1)
	if len(st.Consumers) != MaxLiveConsumers+1 {
		t.Fatalf("%d consumers tracked, want %d (+ %s)", len(st.Consumers), MaxLiveConsumers, OtherConsumers)
	}
	if st.Consumers[0].Consumer != OtherConsumers || st.Consumers[0].Keys != 5 {
		t.Errorf("first consumer %s with %d keys; want %s with 5", st.Consumers[0].Consumer, st.Consumers[0].Keys, OtherConsumers)
	}
}

func TestLiveFollow(t *testing.T) {
	k := testkit.StartKafka(t)
	cl, err := kafka.NewClient(kafka.Conn{Brokers: k.Brokers}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := "lookups-live"
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	produce := func(keys ...string) { // one record, one entry per line
		var v []byte
		for i, key := range keys {
			e := &lookuplog.Entry{Entity: "user", Key: key, At: at.UnixMilli(), Consumer: "fraud-api", Request: key,
				Features: map[string]*float64{"a@1": nil}}
			b, _ := e.Encode()
			if i > 0 {
				v = append(v, '\n')
			}
			v = append(v, b...)
		}
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce("u1") // before Follow starts: read from the start
	l := NewLive()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Follow(ctx, kafka.Conn{Brokers: k.Brokers}, topic, time.Time{}, nil, nil) }()
	produce("u2", "u2b")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st := l.Stats("a@1", at, 1); st != nil && st.Total.Keys == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Follow did not count all three entries in 30s: %+v", l.Stats("a@1", at, 1))
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Follow: %v", err)
	}
	// A follower from a time skips what was appended before it.
	time.Sleep(20 * time.Millisecond)
	from := time.Now()
	time.Sleep(20 * time.Millisecond)
	produce("u3")
	later := NewLive()
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- later.Follow(ctx, kafka.Conn{Brokers: k.Brokers}, topic, from, nil, nil) }()
	deadline = time.Now().Add(30 * time.Second)
	for later.Stats("a@1", at, 1) == nil {
		if time.Now().After(deadline) {
			t.Fatal("Follow from a time counted nothing in 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // anything older would have come first
	cancel()
	<-done
	if st := later.Stats("a@1", at, 1); st.Total.Keys != 1 {
		t.Errorf("Follow from a time counted %d keys, want 1 (u3 only)", st.Total.Keys)
	}
}

// BenchmarkLiveAdd is the web catalog's usage follower counting one
// lookup-log record of a one-key request of 7 features (the wrk benchmark's
// shape, README "Lookup handler") as Follow passes it (AddRecord).
func BenchmarkLiveAdd(b *testing.B) {
	l := NewLive()
	var feats []lookuplog.Feature
	for i := range 7 {
		feats = append(feats, lookuplog.Feature{ID: fmt.Sprintf("feature_%d@1", i)})
	}
	rs := make([]lookuplog.Record, 1<<18) // more than liveRequests: every request is new
	for i := range rs {
		rs[i] = lookuplog.Record{Entity: "user", Key: fmt.Sprintf("u%04d", i), At: now.UnixMilli(),
			Request: fmt.Sprintf("0123456789abcdef-%x", i), Features: feats}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.AddRecord(&rs[i%len(rs)])
		i++
	}
}

// TestFollowCallsCaughtUpAfterTheBacklog: Follow calls caughtUp once, after
// every record the lookup log held at its start (from its from time) was
// passed to add, and none older; records appended afterwards are followed
// too. Live.Follow reports the same through CaughtUp.
func TestFollowCallsCaughtUpAfterTheBacklog(t *testing.T) {
	k := testkit.StartKafka(t)
	cl, err := kafka.NewClient(kafka.Conn{Brokers: k.Brokers}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := "lookups-backlog"
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	produce := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			e := &lookuplog.Entry{Entity: "user", Key: fmt.Sprintf("u%d", i), At: time.Now().UnixMilli(), Request: fmt.Sprint(i),
				Features: map[string]*float64{"a@1": nil}}
			b, _ := e.Encode()
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(e.Key), Value: b})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 100) // older than from: skipped
	time.Sleep(20 * time.Millisecond)
	from := time.Now()
	time.Sleep(20 * time.Millisecond)
	produce(100, 2100) // the backlog

	var mu sync.Mutex
	seen := map[string]int{}
	atCaughtUp := -1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, kafka.Conn{Brokers: k.Brokers}, topic, from, nil,
			func(r *lookuplog.Record) { mu.Lock(); seen[string(r.Key)]++; mu.Unlock() },
			func() { mu.Lock(); atCaughtUp = len(seen); mu.Unlock() })
	}()
	count := func() (int, int) { mu.Lock(); defer mu.Unlock(); return len(seen), atCaughtUp }
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, at := count(); at >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("caughtUp not called in 30 s")
		}
	}
	if _, at := count(); at != 2000 {
		t.Errorf("caughtUp called after %d records, want the backlog's 2000", at)
	}
	produce(2100, 2200) // after catching up
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := count(); n == 2100 {
			break
		}
		if time.Now().After(deadline) {
			n, _ := count()
			t.Fatalf("%d records followed, want 2100", n)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for key, n := range seen {
		var i int
		fmt.Sscanf(key, "u%d", &i)
		if i < 100 || n != 1 {
			t.Errorf("%s passed %d times (records before from are skipped, the others passed once)", key, n)
		}
	}

	// Live.Follow: partial until caught up, and stays partial if it ends first.
	l := NewLive()
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := l.Follow(ctx, kafka.Conn{Brokers: k.Brokers}, topic, from, nil, nil); err != nil {
		t.Fatal(err)
	}
	if l.CaughtUp() {
		t.Error("a Follow that ended before reading the log marked the usage complete")
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- l.Follow(ctx, kafka.Conn{Brokers: k.Brokers}, topic, from, nil, nil) }()
	for deadline := time.Now().Add(30 * time.Second); !l.CaughtUp(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Live.Follow did not catch up in 30 s")
		}
	}
	if st := l.Stats("a@1", time.Now(), 1); st == nil || st.Total.Keys != 2100 {
		t.Errorf("caught up with %+v, want 2100 keys", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
