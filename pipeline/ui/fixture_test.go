package ui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/usage"
)

var fixtureNow = time.Date(2026, 11, 30, 12, 30, 0, 0, time.UTC)

// catalogText is a feature file of n feature names over the demo schemas
// (every 5th with a deprecated version 1 and a version 2), n/5 services
// (one feature in four by a bare name), for the link checker and the
// benchmarks.
func catalogText(n int) string {
	var b strings.Builder
	b.WriteString(`entities:
  - name: user
    key: user_id
sources:
  - name: transactions
    topic: transactions
    schema: transaction.avsc
    event_time: ts
  - name: logins
    topic: logins
    schema: login.avsc
    event_time: ts
features:
`)
	aggs := []string{"count", "sum", "avg", "min", "max", "last"}
	windows := []string{"1h", "7d", "30d", "lifetime"}
	for i := range n {
		name, src, agg, field := fmt.Sprintf("f%03d", i), "transactions", aggs[i%len(aggs)], "amount"
		if i%7 == 3 {
			src, agg, field = "logins", "count", ""
		}
		w := windows[i%len(windows)]
		hop := ""
		if w == "30d" {
			hop = "    hop: 1d\n"
		}
		fieldLine := ""
		if agg != "count" {
			fieldLine = "    field: " + field + "\n"
		}
		def := fmt.Sprintf("    entity: user\n    source: %s\n    aggregation: %s\n%s    window: %s\n%s    owner: team-%c\n    description: Feature number %d, %s of %s.\n    tags: [tag%d, shared]\n",
			src, agg, fieldLine, w, hop, 'a'+rune(i%5), i, agg, src, i%4)
		if i%5 == 0 {
			fmt.Fprintf(&b, "  - name: %s\n    version: 1\n%s    deprecated: true\n    replaced_by: %s@2\n", name, def, name)
			where := ""
			if src == "transactions" {
				where = "    where: amount > 10.0\n"
			}
			fmt.Fprintf(&b, "  - name: %s\n    version: 2\n%s%s", name, strings.Replace(strings.Replace(def, hop, "", 1), "window: "+w, "window: 2h", 1), where)
			continue
		}
		fmt.Fprintf(&b, "  - name: %s\n    version: 1\n%s", name, def)
	}
	// A derived feature and one with a ttl: pages of features without a
	// source, and the ttl's words.
	b.WriteString(`  - name: spend_ratio
    version: 1
    entity: user
    expression: "f001 / f002"
    owner: team-a
    description: Seven-day spend over the 30-day average.
  - name: last_fresh
    version: 1
    entity: user
    source: transactions
    aggregation: last
    field: amount
    window: lifetime
    ttl: 30d
    owner: team-a
    description: Latest amount, expired after 30 days without one.
`)
	b.WriteString("services:\n")
	for s := 0; s < n/5; s++ {
		var refs []string
		for j := range 4 {
			i := (s*5 + j + 1) % n
			ref := fmt.Sprintf("f%03d@1", i)
			if j == 0 {
				ref = fmt.Sprintf("f%03d", i)
			}
			if i%5 == 0 {
				ref = fmt.Sprintf("f%03d@2", i)
			}
			refs = append(refs, ref)
		}
		fmt.Fprintf(&b, "  - name: svc%02d\n    owner: team-%c\n    description: Service %d for model m%02d.\n    features: [%s]\n    models: [m%02d]\n",
			s, 'a'+rune(s%5), s, s, strings.Join(refs, ", "), s)
	}
	return b.String()
}

// fixture is a catalog of n feature names: the file, a registry view with
// every version registered (plus one only the registry knows), statuses, a
// dataset and a model per service, and usage by three consumers.
type fixture struct {
	cfg  *config.File
	reg  *registry.View
	live *usage.Live
}

func newFixture(t testing.TB, n int) *fixture {
	t.Helper()
	cfg := testkit.WriteConfig(t, catalogText(n), nil)
	reg := registry.NewView()
	apply := func(r *kgo.Record, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if err := reg.Apply(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	registered := fixtureNow.Add(-40 * 24 * time.Hour)
	for _, f := range cfg.Features {
		var i int
		fmt.Sscanf(f.Name, "f%d", &i)
		apply(registry.DefinitionRecord("r", registry.Definition{Feature: f.ID, Hash: f.Hash, Fields: f.Definition(), RegisteredAt: registered, RegisteredBy: "worker-1"}))
		for p := range int32(2) {
			if f.Derived != nil {
				break // no source partitions: ready when its inputs are
			}
			state := registry.StateReady
			if i%11 == 4 && p == 1 {
				state = registry.StateWarmingUp
			}
			apply(registry.StatusRecord("r", registry.Status{Feature: f.ID, Topic: f.SourceRef.Topic, Partition: p, State: state,
				UpdatedAt: fixtureNow.Add(-time.Duration(5+i%30) * time.Second)}))
		}
	}
	old, err := cfg.Feature("f001@1")
	if err != nil {
		t.Fatal(err)
	}
	apply(registry.DefinitionRecord("r", registry.Definition{Feature: old.Name + "@9", Hash: "0123456789abcdef", Fields: old.Definition(),
		RegisteredAt: registered, RegisteredBy: "worker-0"}))
	for s, svc := range cfg.Services {
		var refs []registry.FeatureRef
		for _, ref := range svc.Features {
			f, err := cfg.Feature(ref)
			if err != nil {
				t.Fatal(err)
			}
			refs = append(refs, registry.FeatureRef{Feature: f.ID, Hash: f.Hash, Column: f.Name})
		}
		ds := registry.Dataset{Name: fmt.Sprintf("train_%s", svc.Name), Version: 1, Description: "Training rows of " + svc.Name,
			Owner: svc.Owner, Service: svc.Name, Entity: "user", Features: refs, SpinePath: "/data/spine.csv", SpineSHA256: strings.Repeat("ab", 32),
			Rows: 1000 + s, PointInTime: "event", Location: "/data/" + svc.Name + ".parquet", Format: "parquet",
			CreatedAt: registered.Add(time.Duration(s) * time.Hour), Actor: "alice", RegistrationID: fmt.Sprint(s)}
		apply(registry.DatasetRecord("r", ds))
		apply(registry.ModelRecord("r", registry.Model{Name: fmt.Sprintf("m%02d", s), Version: 1, Dataset: ds.ID(), Service: svc.Name,
			Metrics: map[string]float64{"auc": 0.9}, Owner: svc.Owner, Description: "Model on " + svc.Name, Features: refs,
			RegisteredAt: registered.Add(time.Duration(s) * time.Hour), Actor: "bob", RegistrationID: fmt.Sprint(s)}))
	}
	live := usage.NewLive()
	for _, f := range cfg.Features {
		var i int
		fmt.Sscanf(f.Name, "f%d", &i)
		if i%3 == 2 {
			continue // never read: unused
		}
		for h := range 30 {
			consumer := []string{"fraud-api", "batch-scorer", "anonymous"}[h%3]
			for k := range 1 + i%4 {
				live.Add(&lookuplog.Entry{Entity: "user", Key: fmt.Sprintf("u%d", k), At: fixtureNow.Add(-time.Duration(h) * 2 * time.Hour).UnixMilli(),
					Consumer: consumer, Request: fmt.Sprintf("r%d-%d", i, h), Features: map[string]*float64{f.ID: nil}})
			}
		}
	}
	return &fixture{cfg: cfg, reg: reg, live: live}
}

func (f *fixture) ui(t testing.TB, o Options) *UI {
	t.Helper()
	o.Config, o.Registry, o.Usage = f.cfg, f.reg, f.live
	if o.Now == nil {
		o.Now = func() time.Time { return fixtureNow }
	}
	u, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
