package registry

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

func sampleDataset() Dataset {
	return Dataset{
		Name: "train", Version: 2, Description: "d", Owner: "fraud-team", Service: "fraud_scoring", Entity: "user",
		Features:  []FeatureRef{{Feature: "spend@1", Column: "spend", Hash: "abc"}},
		SpinePath: "spine.csv", SpineSHA256: "123", Rows: 7,
		TimeRange:   &TimeRange{Min: time.UnixMilli(1000).UTC(), Max: time.UnixMilli(2000).UTC()},
		PointInTime: "event", Location: "/tmp/train.parquet", Format: "parquet", Config: "f.yaml",
		CreatedAt: time.UnixMilli(3000).UTC(), Actor: "ann", RegistrationID: "r1",
	}
}

func sampleModel() Model {
	return Model{
		Name: "fraud-gbm", Version: 3, Dataset: "train@2", Service: "fraud_scoring", ServiceFeatures: []string{"spend@1"},
		Metrics: map[string]float64{"auc": 0.912, "logloss": 0.2}, Owner: "fraud-team", Description: "gbm",
		Limitations: "cards only", URI: "s3://m/3", Features: []FeatureRef{{Feature: "spend@1", Hash: "abc"}},
		RegisteredAt: time.UnixMilli(4000).UTC(), Actor: "bob", RegistrationID: "r2",
	}
}

// Every record kind decodes to what was encoded, with its kind and id.
func TestCodecRoundTrip(t *testing.T) {
	def := Definition{Feature: "spend@1", Hash: "h", Fields: [][2]string{{"aggregation", "sum"}}, RegisteredAt: time.UnixMilli(5).UTC(), RegisteredBy: "w"}
	st := Status{Feature: "spend@1", Topic: "tx", Partition: 2, State: StateWarmingUp, UpdatedAt: time.UnixMilli(6).UTC(), Next: 4, End: 9}
	ds, m := sampleDataset(), sampleModel()
	for _, tc := range []struct {
		name   string
		encode func() (*kgo.Record, error)
		key    string
		check  func(Record) bool
	}{
		{"definition", func() (*kgo.Record, error) { return DefinitionRecord("t", def) }, "def/spend@1",
			func(r Record) bool {
				return r.Kind == KindDefinition && r.ID == "spend@1" && reflect.DeepEqual(*r.Definition, def)
			}},
		{"status", func() (*kgo.Record, error) { return StatusRecord("t", st) }, "status/spend@1/tx/2",
			func(r Record) bool {
				return r.Kind == KindStatus && r.ID == "spend@1/tx/2" && reflect.DeepEqual(*r.Status, st)
			}},
		{"dataset", func() (*kgo.Record, error) { return DatasetRecord("t", ds) }, "dataset/train@2",
			func(r Record) bool {
				return r.Kind == KindDataset && r.ID == "train@2" && reflect.DeepEqual(*r.Dataset, ds)
			}},
		{"model", func() (*kgo.Record, error) { return ModelRecord("t", m) }, "model/fraud-gbm@3",
			func(r Record) bool {
				return r.Kind == KindModel && r.ID == "fraud-gbm@3" && reflect.DeepEqual(*r.Model, m)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := tc.encode()
			if err != nil {
				t.Fatal(err)
			}
			if string(rec.Key) != tc.key || rec.Topic != "t" {
				t.Fatalf("key %q topic %q, want %q on t", rec.Key, rec.Topic, tc.key)
			}
			got, err := DecodeRecord(rec.Key, rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(got) || got.Tombstone {
				t.Fatalf("decoded %+v", got)
			}
			tomb, err := DecodeRecord(rec.Key, nil)
			if err != nil || !tomb.Tombstone || tomb.Kind != got.Kind || tomb.ID != got.ID {
				t.Fatalf("tombstone decoded %+v, %v", tomb, err)
			}
		})
	}
}

// A kind this version does not know (a newer writer's) is reported as
// ErrUnknownKind and skipped by View.Apply without an error; a malformed
// record is an error.
func TestUnknownKindsAreSkipped(t *testing.T) {
	if _, err := DecodeRecord([]byte("usage/spend@1"), []byte(`{"n":1}`)); !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("unknown kind: %v, want ErrUnknownKind", err)
	}
	v := NewView()
	if err := v.Apply([]byte("usage/spend@1"), []byte(`{"n":1}`)); err != nil {
		t.Fatalf("Apply of an unknown kind: %v, want it skipped", err)
	}
	if len(v.Datasets()) != 0 || len(v.Models()) != 0 {
		t.Fatal("an unknown record changed the view")
	}
	for _, bad := range []struct{ key, value string }{
		{"nokind", "{}"},
		{"def/", "{}"},
		{"status/spend@1", "{}"},
		{"dataset/x@1", "{not json"},
		{"model/x@1", `{"version":"three"}`},
	} {
		if err := v.Apply([]byte(bad.key), []byte(bad.value)); err == nil || errors.Is(err, ErrUnknownKind) {
			t.Errorf("Apply(%q, %q) = %v, want a decode error", bad.key, bad.value, err)
		}
	}
}

// Records written before datasets and models existed decode unchanged.
func TestOldRecordsStillDecode(t *testing.T) {
	v := NewView()
	oldDef := `{"feature":"spend@1","hash":"h1","definition":[["aggregation","sum"],["window_size_ms","604800000"]],"registered_at":"2026-11-01T10:00:00Z","registered_by":"featurepipe-worker/w1"}`
	oldStatus := `{"feature":"spend@1","topic":"tx","partition":0,"state":"warming_up","updated_at":"2026-11-01T10:00:01Z","next":5,"end":10}`
	if err := v.Apply([]byte("def/spend@1"), []byte(oldDef)); err != nil {
		t.Fatal(err)
	}
	if err := v.Apply([]byte("status/spend@1/tx/0"), []byte(oldStatus)); err != nil {
		t.Fatal(err)
	}
	d, ok := v.Definition("spend@1")
	want := Definition{Feature: "spend@1", Hash: "h1", Fields: [][2]string{{"aggregation", "sum"}, {"window_size_ms", "604800000"}},
		RegisteredAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), RegisteredBy: "featurepipe-worker/w1"}
	if !ok || !reflect.DeepEqual(d, want) {
		t.Fatalf("old definition decoded as %+v", d)
	}
	if v.Ready("spend@1") || len(v.Statuses("spend@1")) != 1 || v.Statuses("spend@1")[0].Next != 5 {
		t.Fatalf("old status decoded as %+v", v.Statuses("spend@1"))
	}
	if h := v.History("spend"); len(h) != 1 || h[0].Hash != "h1" {
		t.Fatalf("history of an old definition: %+v", h)
	}
}

func TestHistoryListsEveryVersionInOrder(t *testing.T) {
	v := NewView()
	for _, id := range []string{"spend@10", "spend@2", "spend@1", "spending@1"} {
		r, err := DefinitionRecord("t", Definition{Feature: id, Hash: "h-" + id})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Apply(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, d := range v.History("spend") {
		got = append(got, d.Feature)
	}
	if strings.Join(got, ",") != "spend@1,spend@2,spend@10" {
		t.Fatalf("history %v", got)
	}
}

const catalogFeatures = `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: spend, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d}
services:
  - name: fraud_scoring
    owner: fraud-team
    description: the fraud model's features
    features: [spend@1]
`

// catalogKafka starts a broker with the topics of a feature file that has
// one service, and returns the file and a client.
func catalogKafka(t *testing.T) (*config.File, *kgo.Client, []string, context.Context) {
	t.Helper()
	k, cfg, cl := testkit.Setup(t, testkit.KafkaSection(3)+catalogFeatures, testkit.SetupOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return cfg, cl, k.Brokers, ctx
}

// Registering a name again makes its next version; nothing is overwritten.
func TestRegisterDatasetMakesNewVersions(t *testing.T) {
	cfg, cl, brokers, ctx := catalogKafka(t)
	topic := cfg.Kafka.RegistryTopic
	var got []Dataset
	for i, name := range []string{"train", "train", "other", "train"} {
		d := sampleDataset()
		d.Name, d.Rows, d.CreatedAt = name, i, time.Time{}
		reg, err := RegisterDataset(ctx, cl, topic, d)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, reg)
	}
	var ids []string
	for _, d := range got {
		ids = append(ids, d.ID())
	}
	if strings.Join(ids, " ") != "train@1 train@2 other@1 train@3" {
		t.Fatalf("versions %v", ids)
	}
	v, err := Load(ctx, kafka.Conn{Brokers: brokers}, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range got {
		have, ok := v.Dataset(want.ID())
		if !ok || have.Rows != i || have.RegistrationID != want.RegistrationID || have.CreatedAt.IsZero() {
			t.Fatalf("%s in the catalog: %+v (found %v), want rows %d", want.ID(), have, ok, i)
		}
	}
	if ds := v.Datasets(); len(ds) != 4 || ds[0].ID() != "train@3" {
		t.Fatalf("listing (newest first): %v", ds)
	}
	if _, err := RegisterDataset(ctx, cl, topic, Dataset{Name: "bad@name"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v, want ErrInvalid", err)
	}
}

// A registrant that loses the race for name@N (a rival wrote it between its
// read and its write) takes N+1, and the key's last record, the one
// compaction keeps, is the winner's.
func TestRegisterDatasetLosesARaceAndRetries(t *testing.T) {
	cfg, cl, _, ctx := catalogKafka(t)
	topic := cfg.Kafka.RegistryTopic
	var rival Dataset
	var rivalErr error
	once := sync.Once{}
	testHookBeforeWrite = func() {
		once.Do(func() {
			hook := testHookBeforeWrite
			testHookBeforeWrite = nil
			defer func() { testHookBeforeWrite = hook }()
			d := sampleDataset()
			d.Actor = "rival"
			rival, rivalErr = RegisterDataset(ctx, cl, topic, d)
		})
	}
	t.Cleanup(func() { testHookBeforeWrite = nil })
	d := sampleDataset()
	d.Actor = "me"
	mine, err := RegisterDataset(ctx, cl, topic, d)
	if err != nil || rivalErr != nil {
		t.Fatal(err, rivalErr)
	}
	if rival.ID() != "train@1" || mine.ID() != "train@2" {
		t.Fatalf("rival got %s, I got %s; want train@1 and train@2", rival.ID(), mine.ID())
	}
	var last = map[string][]byte{}
	if err := kafka.ReadToEnd(ctx, cl, topic, func(r *kgo.Record) error {
		last[string(r.Key)] = r.Value
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r, err := DecodeRecord([]byte("dataset/train@1"), last["dataset/train@1"])
	if err != nil || r.Dataset.Actor != "rival" || r.Dataset.RegistrationID != rival.RegistrationID {
		t.Fatalf("last record of train@1: %+v, %v; want the rival's (the winner's)", r.Dataset, err)
	}
}

// Registrations of one name at the same time all succeed, each with its own
// version.
func TestConcurrentDatasetRegistrationsGetDistinctVersions(t *testing.T) {
	cfg, _, brokers, ctx := catalogKafka(t)
	const n = 4
	regs := make([]Dataset, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
			if err != nil {
				errs[i] = err
				return
			}
			defer cl.Close()
			d := sampleDataset()
			d.Actor = fmt.Sprint("actor", i)
			regs[i], errs[i] = RegisterDataset(ctx, cl, cfg.Kafka.RegistryTopic, d)
		}()
	}
	wg.Wait()
	seen := map[int]string{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if other, dup := seen[regs[i].Version]; dup {
			t.Fatalf("%s and %s both got version %d", other, regs[i].Actor, regs[i].Version)
		}
		seen[regs[i].Version] = regs[i].Actor
	}
	v, err := Load(ctx, kafka.Conn{Brokers: brokers}, cfg.Kafka.RegistryTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		d, ok := v.Dataset(regs[i].ID())
		if !ok || d.Actor != regs[i].Actor {
			t.Fatalf("%s is %+v in the catalog, want %s's", regs[i].ID(), d, regs[i].Actor)
		}
	}
	if len(v.Datasets()) != n {
		t.Fatalf("%d datasets in the catalog, want %d", len(v.Datasets()), n)
	}
}

func TestParseMetric(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		val  float64
		ok   bool
	}{
		{"auc=0.912", "auc", 0.912, true},
		{" recall_at_5 = 1e-2 ", "recall_at_5", 0.01, true},
		{"auc", "", 0, false},
		{"=0.9", "", 0, false},
		{"auc=high", "", 0, false},
		{"auc=NaN", "", 0, false},
		{"auc=+Inf", "", 0, false},
		{"9lives=1", "", 0, false},
	} {
		name, val, err := ParseMetric(tc.in)
		if (err == nil) != tc.ok || name != tc.name || val != tc.val {
			t.Errorf("ParseMetric(%q) = %q, %v, %v", tc.in, name, val, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseMetric(%q): %v is not ErrInvalid", tc.in, err)
		}
	}
}

// registerTrain registers the dataset train (built from fraud_scoring) and
// returns its registered version.
func registerTrain(t *testing.T, ctx context.Context, cl *kgo.Client, topic, service string) Dataset {
	t.Helper()
	d := sampleDataset()
	d.Service = service
	reg, err := RegisterDataset(ctx, cl, topic, d)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestCheckModel(t *testing.T) {
	cfg, cl, brokers, ctx := catalogKafka(t)
	topic := cfg.Kafka.RegistryTopic
	registerTrain(t, ctx, cl, topic, "")        // train@1, from listed features
	registerTrain(t, ctx, cl, topic, "old_svc") // train@2, from a service no longer in the file
	v, err := Load(ctx, kafka.Conn{Brokers: brokers}, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := Model{Name: "fraud-gbm", Version: 3, Dataset: "train@1", Service: "fraud_scoring", Metrics: map[string]float64{"auc": 0.9}}
	for _, tc := range []struct {
		name   string
		change func(*Model)
		cfg    *config.File
		is     error
		msg    string
	}{
		{"valid", func(*Model) {}, cfg, nil, ""},
		{"service known only from a dataset", func(m *Model) { m.Service = "old_svc" }, cfg, nil, ""},
		{"no feature file: the catalog alone", func(m *Model) { m.Service = "old_svc" }, nil, nil, ""},
		{"unknown dataset", func(m *Model) { m.Dataset = "train@9" }, cfg, ErrNotFound, "dataset train@9 is not in the catalog; registered: train@2, train@1"},
		{"dataset without version", func(m *Model) { m.Dataset = "train" }, cfg, ErrInvalid, "want name@version"},
		{"unknown service", func(m *Model) { m.Service = "fraud_scorin" }, cfg, ErrNotFound, "feature service fraud_scorin is not in the catalog"},
		{"no service", func(m *Model) { m.Service = "" }, cfg, ErrInvalid, "no feature service"},
		{"bad name", func(m *Model) { m.Name = "fraud gbm" }, cfg, ErrInvalid, `model name "fraud gbm"`},
		{"version 0", func(m *Model) { m.Version = 0 }, cfg, ErrInvalid, "version 0"},
		{"bad metric", func(m *Model) { m.Metrics = map[string]float64{"a b": 1} }, cfg, ErrInvalid, "metric a b=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := ok
			m.Metrics = map[string]float64{"auc": 0.9}
			tc.change(&m)
			err := CheckModel(&m, v, tc.cfg)
			if tc.is == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(m.Features) != 1 || m.Features[0].Feature != "spend@1" || m.Features[0].Hash != "abc" {
					t.Fatalf("features %+v, want the dataset's", m.Features)
				}
				if m.Service == "fraud_scoring" && !reflect.DeepEqual(m.ServiceFeatures, []string{"spend@1"}) {
					t.Fatalf("service features %v, want the file's", m.ServiceFeatures)
				}
				return
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want %v saying %q", err, tc.is, tc.msg)
			}
		})
	}
}

// A model version is immutable: the same content again is idempotent, other
// content fails with ErrModelExists naming the difference, also when it
// loses a race to a rival.
func TestRegisterModelIsImmutable(t *testing.T) {
	cfg, cl, brokers, ctx := catalogKafka(t)
	topic := cfg.Kafka.RegistryTopic
	registerTrain(t, ctx, cl, topic, "fraud_scoring")
	m := Model{Name: "fraud-gbm", Version: 3, Dataset: "train@1", Service: "fraud_scoring",
		Metrics: map[string]float64{"auc": 0.912}, Owner: "fraud-team", URI: "s3://m/3", Actor: "ann"}
	first, created, err := RegisterModel(ctx, cl, topic, cfg, m)
	if err != nil || !created {
		t.Fatalf("first registration: created %v, %v", created, err)
	}
	again := m
	again.Actor = "bob"
	got, created, err := RegisterModel(ctx, cl, topic, cfg, again)
	if err != nil || created || got.RegistrationID != first.RegistrationID || got.Actor != "ann" {
		t.Fatalf("identical again: %+v created %v, %v; want the first registration, unchanged", got, created, err)
	}
	changed := m
	changed.Metrics = map[string]float64{"auc": 0.95}
	if _, _, err := RegisterModel(ctx, cl, topic, cfg, changed); !errors.Is(err, ErrModelExists) ||
		!strings.Contains(err.Error(), "metrics: registered map[auc:0.912], now map[auc:0.95]") {
		t.Fatalf("changed content: %v, want ErrModelExists showing the metrics", err)
	}

	// Lose a race: a rival registers fraud-gbm@4 between our read and write.
	for _, rivalSame := range []bool{true, false} {
		m4 := m
		m4.Version = 4 + map[bool]int{true: 0, false: 1}[rivalSame]
		rival := m4
		if !rivalSame {
			rival.Owner = "someone-else"
		}
		var rivalErr error
		testHookBeforeWrite = func() {
			testHookBeforeWrite = nil
			_, _, rivalErr = RegisterModel(ctx, cl, topic, cfg, rival)
		}
		_, created, err := RegisterModel(ctx, cl, topic, cfg, m4)
		testHookBeforeWrite = nil
		if rivalErr != nil {
			t.Fatal(rivalErr)
		}
		if rivalSame && (err != nil || created) {
			t.Fatalf("lost to an identical rival: created %v, %v; want idempotent success", created, err)
		}
		if !rivalSame && !errors.Is(err, ErrModelExists) {
			t.Fatalf("lost to a different rival: %v, want ErrModelExists", err)
		}
	}
	v, err := Load(ctx, kafka.Conn{Brokers: brokers}, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := v.Model("fraud-gbm@5"); got.Owner != "someone-else" {
		t.Fatalf("fraud-gbm@5 is %+v, want the rival's (first in the log)", got)
	}
	// The loser rewrote the winner's record, so compaction keeps the rival's.
	var last = map[string][]byte{}
	if err := kafka.ReadToEnd(ctx, cl, topic, func(r *kgo.Record) error {
		last[string(r.Key)] = r.Value
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r, err := DecodeRecord([]byte("model/fraud-gbm@5"), last["model/fraud-gbm@5"]); err != nil || r.Model.Owner != "someone-else" {
		t.Fatalf("last record of fraud-gbm@5: %+v, %v; want the rival's (the winner's)", r.Model, err)
	}
	if ms := v.Models(); len(ms) != 3 {
		t.Fatalf("models %+v, want 3 versions", ms)
	}
}

// The default drift baseline of a feature version is the newest dataset
// that has its statistics, whatever newer datasets without them say; the
// statistics survive the record codec.
func TestNewestDatasetWith(t *testing.T) {
	v := NewView()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	stats := func(values ...float64) *monitor.Stats {
		s := monitor.NewStats()
		for _, x := range values {
			s.AddValue(x)
		}
		return s
	}
	for _, d := range []Dataset{
		{Name: "train", Version: 1, CreatedAt: t0, Statistics: map[string]*monitor.Stats{"spend@1": stats(1, 2)}},
		{Name: "train", Version: 2, CreatedAt: t0.Add(time.Hour), Statistics: map[string]*monitor.Stats{"spend@1": stats(5, 6, 7)}},
		// Newest, but without spend@1's statistics (an older featurepipe,
		// or another feature set).
		{Name: "other", Version: 1, CreatedAt: t0.Add(2 * time.Hour), Features: []FeatureRef{{Feature: "spend@1"}},
			Statistics: map[string]*monitor.Stats{"spend@2": stats(9)}},
		{Name: "older", Version: 1, CreatedAt: t0.Add(-time.Hour), Statistics: map[string]*monitor.Stats{"spend@2": stats(3)}},
	} {
		r, err := DatasetRecord("t", d)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Apply(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	for id, want := range map[string]string{"spend@1": "train@2", "spend@2": "other@1", "spend@3": ""} {
		d, ok := v.NewestDatasetWith(id)
		if got := map[bool]string{true: d.ID(), false: ""}[ok]; got != want {
			t.Errorf("newest dataset with %s: %q, want %q", id, got, want)
		}
	}
	d, _ := v.NewestDatasetWith("spend@1")
	if s := d.Statistics["spend@1"]; s == nil || s.Count() != 3 || *s.Summary().Mean != 6 {
		t.Fatalf("train@2's spend@1 statistics after the codec: %+v", d.Statistics["spend@1"])
	}
}
