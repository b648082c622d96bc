package e2e

import (
	"bufio"
	"bytes"
	"context"
	be "encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/featurepipe/featurepipe/internal/schemaregistry"
	"github.com/featurepipe/featurepipe/internal/schemaregistry/registrytest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
	"github.com/featurepipe/featurepipe/schemas"
)

const confluentFeatures = `entities:
  - name: user
    key: user_id
sources:
  - name: transactions
    topic: cf-transactions-{{ID}}
    schema: transaction.avsc
    event_time: ts
    encoding: confluent
features:
  - {name: cf_count, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
  - {name: cf_sum, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: lifetime, owner: t, description: d}
  - {name: cf_last, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, owner: t, description: d}
`

// The writer schemas the Python producers use, besides transaction.avsc:
// a newer one (an extra field with a default; the registry's BACKWARD
// check accepts it), an older one still in use (amount an int, no currency:
// registered after compatibility NONE, as teams do to let an old producer
// on), and a broken one (amount a string).
const (
	cfNewer = `{"type":"record","name":"Transaction","namespace":"featurepipe.demo","fields":[
 {"name":"user_id","type":"string"},{"name":"merchant_id","type":"string"},{"name":"amount","type":"double"},
 {"name":"currency","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"channel","type":"string","default":"web"}]}`
	cfOlder = `{"type":"record","name":"Transaction","namespace":"featurepipe.demo","fields":[
 {"name":"user_id","type":"string"},{"name":"merchant_id","type":"string"},{"name":"amount","type":"int"},
 {"name":"ts","type":"long"}]}`
	cfBroken = `{"type":"record","name":"Transaction","namespace":"featurepipe.demo","fields":[
 {"name":"user_id","type":"string"},{"name":"merchant_id","type":"string"},{"name":"amount","type":"string"},
 {"name":"currency","type":"string"},{"name":"ts","type":"long"}]}`
)

// cfProduced is one line of confluent_produce.py's output.
type cfProduced struct {
	Batch, Index int
	Partition    int32
	Offset       int64
	SchemaID     uint32 `json:"schema_id"`
}

// TestConfluentProducerThroughSchemaRegistry produces with a client that is
// not featurepipe: confluent-kafka (librdkafka) and its AvroSerializer,
// which registers each writer schema in the schema registry and writes
// Confluent's wire format. A worker resolves the schema ids in the registry
// and reads the older and newer writers by Avro resolution; lookups and a
// backfill return exactly the produced values, and the broken writer's
// records reach the dead-letter topic with reason incompatible_schema.
// CONFLUENT_PYTHON is the python of a venv with confluent-kafka[avro]
// (make test-registry builds it).
func TestConfluentProducerThroughSchemaRegistry(t *testing.T) {
	py := os.Getenv("CONFLUENT_PYTHON")
	if py == "" {
		t.Skip("CONFLUENT_PYTHON is not set: make test-registry runs this test with confluent-kafka from PyPI")
	}
	reg := registrytest.New()
	regURL, stopReg := reg.Start()
	defer stopReg()
	text := testkit.KafkaSection(3) + fmt.Sprintf("  schema_registry: {url: %q}\n", regURL) + confluentFeatures
	k, cfg, _ := testkit.Setup(t, text, testkit.SetupOptions{})
	src := cfg.Sources[0]

	// What to produce: 4 batches of 40 records over 8 users, event times
	// strictly increasing so that "last" is unambiguous; amounts are
	// multiples of 0.25 (exact sums).
	now := time.Now().UnixMilli()
	type batch struct {
		Schema        json.RawMessage  `json:"schema"`
		Compatibility string           `json:"compatibility,omitempty"`
		Records       []map[string]any `json:"records"`
	}
	txn, err := schemas.Files.ReadFile("transaction.avsc")
	if err != nil {
		t.Fatal(err)
	}
	batches := []batch{{Schema: txn}, {Schema: json.RawMessage(cfNewer)}, {Schema: json.RawMessage(cfOlder), Compatibility: "NONE"}, {Schema: json.RawMessage(cfBroken)}}
	type want struct {
		count, sum, last float64
		lastTS           int64
	}
	wants := map[string]*want{}
	ts := now - 3_600_000
	for b := range batches {
		for i := 0; i < 40; i++ {
			user := fmt.Sprintf("u-%d", (i*7+b)%8)
			ts += 1000
			var amount any = float64(i*b+i)/4 + 0.25
			rec := map[string]any{"user_id": user, "merchant_id": "m1", "currency": "EUR", "ts": ts, "amount": amount}
			switch b {
			case 1:
				rec["channel"] = "app"
			case 2:
				amount = i + b
				rec["amount"] = amount
				delete(rec, "currency")
			case 3:
				rec["amount"] = fmt.Sprint(amount)
			}
			batches[b].Records = append(batches[b].Records, rec)
			if b == 3 {
				continue
			}
			v := 0.0
			switch a := amount.(type) {
			case float64:
				v = a
			case int:
				v = float64(a)
			}
			w := wants[user]
			if w == nil {
				w = &want{}
				wants[user] = w
			}
			w.count++
			w.sum += v
			if ts > w.lastTS {
				w.last, w.lastTS = v, ts
			}
		}
	}
	spec, err := json.Marshal(map[string]any{"bootstrap": strings.Join(k.Brokers, ","), "registry": regURL, "topic": src.Topic, "batches": batches})
	if err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(t.TempDir(), "spec.json")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/confluent_produce.py", specPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("confluent_produce.py: %v\n%s", err, stderr.String())
	}
	var produced []cfProduced
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var p cfProduced
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		produced = append(produced, p)
	}
	if len(produced) != 4*40 {
		t.Fatalf("the producer reports %d records, want %d\n%s", len(produced), 4*40, stderr.String())
	}
	ids := map[int]uint32{}
	for _, p := range produced {
		ids[p.Batch] = p.SchemaID
	}
	if len(map[uint32]bool{ids[0]: true, ids[1]: true, ids[2]: true, ids[3]: true}) != 4 {
		t.Fatalf("schema ids per batch %v: want four distinct writer schemas", ids)
	}

	// A worker and a lookup service; values must be exact.
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(t.TempDir(), "worker"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(t.TempDir(), "view"))
	keys := make([]string, 0, len(wants))
	for u := range wants {
		keys = append(keys, u)
	}
	var last string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		last = compareConfluent(t, ls.url, keys, func(u string) (float64, float64, float64) {
			x := wants[u]
			return x.count, x.sum, x.last
		})
		if last == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookups never matched the produced values: %s", last)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The broken writer's 40 records, and nothing else, are dead letters
	// with reason incompatible_schema and their original bytes.
	dead := readDeadLetters(t, k.Brokers, cfg.Kafka.DeadLetterTopic, 40, time.Minute)
	broken := map[[2]int64]bool{}
	for _, p := range produced {
		if p.Batch == 3 {
			broken[[2]int64{int64(p.Partition), p.Offset}] = true
		}
	}
	for _, d := range dead {
		var part, off int64
		fmt.Sscan(header(d, worker.HeaderSourcePartition), &part)
		fmt.Sscan(header(d, worker.HeaderSourceOffset), &off)
		if !broken[[2]int64{part, off}] {
			t.Fatalf("dead letter for %d/%d, not a record of the broken writer (reason %s: %s)", part, off, header(d, worker.HeaderReason), header(d, worker.HeaderError))
		}
		if r := header(d, worker.HeaderReason); r != events.ReasonIncompatibleSchema || !strings.Contains(header(d, worker.HeaderError), `field "amount" is string`) {
			t.Fatalf("dead letter reason %q (%s), want %s naming amount", r, header(d, worker.HeaderError), events.ReasonIncompatibleSchema)
		}
		if len(d.Value) < 5 || d.Value[0] != 0 || be.BigEndian.Uint32(d.Value[1:5]) != ids[3] {
			t.Fatalf("dead letter value does not carry the original Confluent header with schema id %d: % x", ids[3], d.Value[:min(len(d.Value), 8)])
		}
		delete(broken, [2]int64{part, off})
	}
	if len(broken) != 0 {
		t.Fatalf("%d broken records never reached the dead-letter topic", len(broken))
	}

	// A backfill replays the same records through the registry, with its
	// own client, and agrees.
	points := make([]backfill.Point, 0, len(keys))
	for _, u := range keys {
		points = append(points, backfill.Point{Key: u, T: now + 60_000})
	}
	vals, err := backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: []string{"cf_count", "cf_sum", "cf_last"}}, points)
	if err != nil {
		t.Fatal(err)
	}
	for r, p := range points {
		x := wants[p.Key]
		for c, wantV := range []float64{x.count, x.sum, x.last} {
			if got, ok := vals.Get(r, c); !ok || got != wantV {
				t.Errorf("backfill %s %s = %v (ok %v), want %v", p.Key, vals.Columns[c], got, ok, wantV)
			}
		}
	}
	if got := vals.Events.Rejected[events.ReasonIncompatibleSchema]; got != 40 {
		t.Errorf("backfill rejected %d records as %s, want 40 (%v)", got, events.ReasonIncompatibleSchema, vals.Events.Rejected)
	}
	// One fetch per writer schema id for the worker and one for the
	// backfill (and the lookup service reads no source records).
	for b, id := range ids {
		if n := reg.IDFetches(int(id)); n < 1 || n > 2 {
			t.Errorf("schema id %d (batch %d) fetched %d times, want one per process (worker, backfill)", id, b, n)
		}
	}
	t.Logf("%d records from confluent-kafka %s through the registry at %s: schema ids %v; lookups and backfill exact; 40 incompatible dead-lettered",
		len(produced), "AvroSerializer", regURL, ids)
}

// compareConfluent returns "" when every key's features equal want, else
// the first difference.
func compareConfluent(t *testing.T, url string, keys []string, want func(string) (count, sum, last float64)) string {
	var resp lookup.LookupResponse
	if code := postJSON(t, url+"/v1/lookup", lookup.LookupRequest{Entity: "user", Keys: keys, Features: []string{"cf_count", "cf_sum", "cf_last"}}, &resp); code != http.StatusOK {
		return fmt.Sprintf("HTTP %d", code)
	}
	for _, r := range resp.Results {
		c, s, l := want(r.Key)
		for name, wv := range map[string]float64{"cf_count": c, "cf_sum": s, "cf_last": l} {
			got := r.Features[name].Value
			if got == nil || *got != wv {
				return fmt.Sprintf("%s %s = %v (%s), want %v", r.Key, name, got, r.Features[name].Status, wv)
			}
		}
	}
	return ""
}

// TestRegistryOutageStopsTheWorkerWithoutDeadLetters: a record whose
// writer schema cannot be fetched (the registry is down) is not bad input.
// The worker must not dead-letter it nor commit past it: Run returns an
// error naming the registry (a backfill fails likewise), and a worker
// started once the registry is back applies every record exactly once.
func TestRegistryOutageStopsTheWorkerWithoutDeadLetters(t *testing.T) {
	reg := registrytest.New()
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, `{"error_code":50301,"message":"maintenance"}`, http.StatusServiceUnavailable)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	text := testkit.KafkaSection(2) + fmt.Sprintf("  schema_registry: {url: %q}\n", srv.URL) + confluentFeatures
	k, cfg, cl := testkit.Setup(t, text, testkit.SetupOptions{})
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UnixMilli()
	const n = 20
	for i := 0; i < n; i++ {
		rec, err := enc.Record(testkit.Event("transactions", fmt.Sprintf("u-%d", i%4), now-int64(n-i)*1000, float64(i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	down.Store(true)
	dir := filepath.Join(t.TempDir(), "worker")
	client, err := schemaregistry.New(schemaregistry.Options{URL: srv.URL, RetryFor: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := launchWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, SchemaRegistry: client}, dir)
	select {
	case err := <-r.done:
		if err == nil || !strings.Contains(err.Error(), "schema registry unavailable") || !strings.Contains(err.Error(), "maintenance") {
			t.Fatalf("worker stopped with %v, want the registry's unavailability", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the worker kept running while no record could be decoded")
	}
	r.stop()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, cfg.Kafka.DeadLetterTopic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 {
			t.Errorf("dead-letter partition %d has %d records; a registry outage must dead-letter nothing", o.Partition, o.Offset)
		}
	})

	// A backfill meanwhile fails rather than skip the records as invalid.
	_, err = backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: []string{"cf_count"}, SchemaRegistry: client},
		[]backfill.Point{{Key: "u-0", T: now + 60_000}})
	if err == nil || !strings.Contains(err.Error(), "schema registry unavailable") {
		t.Fatalf("backfill during the outage: %v, want the registry's unavailability", err)
	}

	down.Store(false)
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, dir)
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(t.TempDir(), "view"))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var resp lookup.LookupResponse
		total := 0.0
		if postJSON(t, ls.url+"/v1/lookup", lookup.LookupRequest{Entity: "user", Keys: []string{"u-0", "u-1", "u-2", "u-3"}, Features: []string{"cf_count"}}, &resp) == http.StatusOK {
			for _, kr := range resp.Results {
				if v := kr.Features["cf_count"].Value; v != nil {
					total += *v
				}
			}
		}
		if total == n {
			break
		}
		if total > n || time.Now().After(deadline) {
			t.Fatalf("after the outage the features count %v records, want exactly %d", total, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
