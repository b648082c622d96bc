package e2e

import (
	"context"
	le "encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// Writer schemas a misbehaving producer might use: the feature file names
// them (as sources feeding no feature) so their records decode, and then
// cannot be read as the transactions source's schema (Avro resolution).
const (
	nullableAmount = `{"type":"record","name":"Transaction","namespace":"featurepipe.legacy","fields":[
 {"name":"user_id","type":"string"},{"name":"amount","type":["null","double"]},{"name":"ts","type":"long"}]}`
	stringAmount = `{"type":"record","name":"Transaction","namespace":"featurepipe.strings","fields":[
 {"name":"user_id","type":"string"},{"name":"amount","type":"string"},{"name":"ts","type":"long"}]}`
)

const badInputSources = `
  - name: legacy_transactions
    topic: legacy-{{ID}}
    schema: nullable.avsc
    event_time: ts
  - name: string_transactions
    topic: strings-{{ID}}
    schema: strings.avsc
    event_time: ts
`

// TestBadInputGoesToTheDeadLetterTopic mixes thousands of bad records of
// every kind into a valid stream. The valid features must be exact, the
// dead-letter topic must hold every bad record exactly with its reason and
// source partition/offset, and the metric must count each reason.
func TestBadInputGoesToTheDeadLetterTopic(t *testing.T) {
	text := strings.Replace(featureFile, "features:\n", strings.TrimPrefix(badInputSources, "\n")+"features:\n", 1)
	// The transactions topic accepts records up to 32 MiB so that a 10 MB key can be produced at all.
	big := "33554432"
	k, cfg, cl := testkit.Setup(t, text, testkit.SetupOptions{
		Files:              map[string]string{"nullable.avsc": nullableAmount, "strings.avsc": stringAmount},
		ClientOpts:         []kgo.Opt{kgo.ProducerBatchMaxBytes(32 << 20), kgo.MaxBufferedBytes(256 << 20)},
		SourceTopicConfigs: map[string]map[string]*string{"transactions": {"max.message.bytes": &big}},
	})
	ctx := context.Background()
	txTopic := cfg.Sources[0].Topic
	w, _ := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(t.TempDir(), "worker"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(t.TempDir(), "view"))

	tx, _ := cfg.Source("transactions")
	legacy, _ := cfg.Source("legacy_transactions")
	strs, _ := cfg.Source("string_transactions")
	valid := func(user string, amount float64, ts int64) []byte {
		b, err := tx.Schema.Encode(nil, testkit.Event("transactions", user, ts, amount))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	now := time.Now().UnixMilli()
	huge := strings.Repeat("k", 10<<20)
	// Each kind: how to make a bad record, and the reason it must get.
	kinds := []struct {
		reason string
		make   func(i int) *kgo.Record
	}{
		{events.ReasonNotAvro, func(i int) *kgo.Record {
			return &kgo.Record{Key: []byte("user-001"), Value: []byte(fmt.Sprintf("garbage %d \x00\xff", i))}
		}},
		{events.ReasonMalformed, func(i int) *kgo.Record {
			b := valid("user-001", 5, now-1000)
			return &kgo.Record{Key: []byte("user-001"), Value: b[:len(b)-3-i%3]}
		}},
		{events.ReasonUnknownSchema, func(i int) *kgo.Record {
			b := valid("user-001", 5, now-1000)
			le.LittleEndian.PutUint64(b[2:10], uint64(i)+12345)
			return &kgo.Record{Key: []byte("user-001"), Value: b}
		}},
		{events.ReasonIncompatibleSchema, func(i int) *kgo.Record { // amount null in a writer schema that allows it; the reader's does not
			b, err := legacy.Schema.Encode(nil, map[string]any{"user_id": "user-002", "amount": nil, "ts": now - 1000})
			if err != nil {
				t.Fatal(err)
			}
			return &kgo.Record{Key: []byte("user-002"), Value: b}
		}},
		{events.ReasonIncompatibleSchema, func(i int) *kgo.Record { // amount a string in its writer schema: does not promote to double
			b, err := strs.Schema.Encode(nil, map[string]any{"user_id": "user-003", "amount": "12.5", "ts": now - 1000})
			if err != nil {
				t.Fatal(err)
			}
			return &kgo.Record{Key: []byte("user-003"), Value: b}
		}},
		{events.ReasonNonFinite, func(i int) *kgo.Record {
			v := []float64{math.NaN(), math.Inf(1), math.Inf(-1)}[i%3]
			return &kgo.Record{Key: []byte("user-004"), Value: valid("user-004", v, now-1000)}
		}},
		{events.ReasonEmptyKey, func(i int) *kgo.Record {
			return &kgo.Record{Key: []byte(""), Value: valid("", 1, now-1000)}
		}},
		{events.ReasonKeyMismatch, func(i int) *kgo.Record {
			return &kgo.Record{Key: []byte("user-005"), Value: valid("user-006", 1, now-1000)}
		}},
		{events.ReasonFuture, func(i int) *kgo.Record {
			return &kgo.Record{Key: []byte("user-007"), Value: valid("user-007", 1, now+int64(30*24*time.Hour/time.Millisecond))}
		}},
		{events.ReasonTooOld, func(i int) *kgo.Record {
			return &kgo.Record{Key: []byte("user-008"), Value: valid("user-008", 1, -1000-int64(i))}
		}},
	}
	const users, perKind = 100, 300
	rng := rand.New(rand.NewPCG(31, 32))
	p := newProduced()
	type badRef struct {
		partition int32
		offset    int64
	}
	wantBad := map[badRef]string{}
	wantPerReason := map[string]int{}
	for round := 0; round < perKind; round++ {
		produceEvents(t, ctx, cl, cfg, genEvents(rng, 40, users, 40*24*time.Hour, time.Now()), p)
		var recs []*kgo.Record
		reasonOf := map[*kgo.Record]string{}
		for _, kd := range kinds {
			r := kd.make(round)
			r.Topic = txTopic
			recs = append(recs, r)
			reasonOf[r] = kd.reason
		}
		if round%150 == 0 { // a 10 MB key, twice in the run
			r := &kgo.Record{Topic: txTopic, Key: []byte(huge), Value: valid(huge, 1, now-1000)}
			recs = append(recs, r)
			reasonOf[r] = events.ReasonKeyTooLarge
		}
		res := cl.ProduceSync(ctx, recs...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce bad records: %v", err)
		}
		for _, r := range res {
			reason := reasonOf[r.Record]
			wantBad[badRef{r.Record.Partition, r.Record.Offset}] = reason
			wantPerReason[reason]++
		}
	}
	n := waitExact(t, ls, cfg, p, allKeys(users), 2*time.Minute)
	dead := readDeadLetters(t, k.Brokers, cfg.Kafka.DeadLetterTopic, len(wantBad), time.Minute)
	for _, d := range dead {
		part, _ := strconv.Atoi(header(d, worker.HeaderSourcePartition))
		off, _ := strconv.ParseInt(header(d, worker.HeaderSourceOffset), 10, 64)
		ref := badRef{int32(part), off}
		want, ok := wantBad[ref]
		if !ok {
			t.Fatalf("dead letter for %v, which was not a bad record (reason %s)", ref, header(d, worker.HeaderReason))
		}
		if got := header(d, worker.HeaderReason); got != want {
			t.Fatalf("dead letter %v: reason %q, want %q (%s)", ref, got, want, header(d, worker.HeaderError))
		}
		if header(d, worker.HeaderSourceTopic) != txTopic || header(d, worker.HeaderError) == "" {
			t.Fatalf("dead letter %v lacks source topic or error headers: %v", ref, d.Headers)
		}
		delete(wantBad, ref)
	}
	if len(wantBad) != 0 {
		t.Fatalf("%d bad records never reached the dead-letter topic", len(wantBad))
	}
	for reason, want := range wantPerReason {
		got := testutil.ToFloat64(w.Metrics().DeadLetters.WithLabelValues("transactions", reason))
		if int(got) != want {
			t.Errorf("metric dead_letters_total{reason=%q} = %v, want %d", reason, got, want)
		}
	}
	t.Logf("%d bad records (%d kinds, incl. two 10 MB keys) in %d valid events: all dead-lettered with reasons; %d values equal brute force",
		len(dead), len(wantPerReason), p.total, n)
}
