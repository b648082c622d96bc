package lineage

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/schemas"
)

// file declares count@1, amount@1 (sum) and amount@2 (avg) of user over
// transactions, and two services sharing count@1; extra is appended to the
// features: list, services follow.
func file(t *testing.T, features, services string) *config.File {
	t.Helper()
	doc := `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
` + features + services
	f, err := config.Parse("f.yaml", []byte(doc), schemas.Files, ".")
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, doc)
	}
	return f
}

const baseFeatures = `  - {name: count, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, owner: risk-team, description: d}
  - {name: amount, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: payments-team, description: d}
  - {name: amount, version: 2, entity: user, source: transactions, aggregation: avg, field: amount, window: 1d, owner: payments-team, description: d}
`

const baseServices = `services:
  - {name: fraud, owner: fraud-team, description: d, features: [count@1, amount@1]}
  - {name: spend, owner: payments-team, description: d, features: [count@1, amount]}
`

// catalog registers every feature of cfg, a dataset train@1 built from the
// fraud service and a model fraud-gbm@1 trained on it.
func catalog(t *testing.T, cfg *config.File) *registry.View {
	t.Helper()
	v := registry.NewView()
	put := func(key string, rec func() ([]byte, []byte)) {
		k, val := rec()
		if err := v.Apply(k, val); err != nil {
			t.Fatalf("apply %s: %v", key, err)
		}
	}
	for _, f := range cfg.Features {
		r, err := registry.DefinitionRecord("reg", registry.Definition{Feature: f.ID, Hash: f.Hash, Fields: f.Definition(), RegisteredAt: time.Unix(0, 0).UTC(), RegisteredBy: "ann"})
		if err != nil {
			t.Fatal(err)
		}
		put(f.ID, func() ([]byte, []byte) { return r.Key, r.Value })
	}
	ds := registry.Dataset{Name: "train", Version: 1, Owner: "ds-team", Service: "fraud", Entity: "user",
		Features: []registry.FeatureRef{{Feature: "count@1"}, {Feature: "amount@1"}}}
	r, err := registry.DatasetRecord("reg", ds)
	if err != nil {
		t.Fatal(err)
	}
	put("train@1", func() ([]byte, []byte) { return r.Key, r.Value })
	m := registry.Model{Name: "fraud-gbm", Version: 1, Dataset: "train@1", Service: "fraud", ServiceFeatures: []string{"count@1", "amount@1"}, Owner: "ml-team"}
	r, err = registry.ModelRecord("reg", m)
	if err != nil {
		t.Fatal(err)
	}
	put("fraud-gbm@1", func() ([]byte, []byte) { return r.Key, r.Value })
	return v
}

func ids(ns []Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

func TestGraphWalks(t *testing.T) {
	cfg := file(t, baseFeatures, baseServices)
	g := Build(cfg, catalog(t, cfg), Consumers{"count@1": {"fraud-api": 7}, "amount@2": {Anonymous: 1}})
	for _, tc := range []struct {
		name, root string
		dir        Direction
		want       []string
	}{
		{"downstream of a shared feature reaches both services, the dataset, the model and its consumer", "feature:count@1", Downstream,
			[]string{"feature:count@1", "service:fraud", "service:spend", "dataset:train@1", "model:fraud-gbm@1", "consumer:fraud-api"}},
		{"a bare reference links the version it resolves to now (newest)", "feature:amount@2", Downstream,
			[]string{"feature:amount@2", "service:spend", "consumer:anonymous"}},
		{"upstream of a model goes back to the topic", "model:fraud-gbm@1", Upstream,
			[]string{"model:fraud-gbm@1", "topic:tx", "source:transactions", "feature:amount@1", "feature:count@1", "service:fraud", "dataset:train@1"}},
		{"upstream of a consumer", "consumer:fraud-api", Upstream,
			[]string{"consumer:fraud-api", "topic:tx", "source:transactions", "feature:count@1"}},
		{"both directions of a service", "service:spend", Both,
			[]string{"service:spend", "topic:tx", "source:transactions", "feature:amount@2", "feature:count@1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := g.Walk(tc.root, tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(sub.Nodes); !slices.Equal(got, tc.want) {
				t.Errorf("nodes = %v\nwant    %v", got, tc.want)
			}
			for _, e := range sub.Edges {
				if !slices.Contains(tc.want, e.From) || !slices.Contains(tc.want, e.To) {
					t.Errorf("edge %v leaves the walk", e)
				}
			}
		})
	}
	sub, _ := g.Walk("feature:count@1", Downstream)
	if !slices.Contains(sub.Edges, Edge{From: "feature:count@1", To: "consumer:fraud-api", Lookups: 7}) {
		t.Errorf("edges lack the consumer's lookups: %v", sub.Edges)
	}
	if n, _ := g.Node("model:fraud-gbm@1"); n.Owner != "ml-team" || !n.Registered {
		t.Errorf("model node = %+v", n)
	}
	if _, err := g.Walk("feature:nope@1", Both); err == nil || !strings.Contains(err.Error(), "known: feature:amount@1") {
		t.Errorf("unknown node error = %v", err)
	}
}

// A registered version that left the file keeps its topic and source from
// its registered definition.
func TestGraphRegisteredOnly(t *testing.T) {
	old := file(t, baseFeatures, baseServices)
	v := catalog(t, old)
	g := Build(nil, v, nil)
	sub, err := g.Walk("feature:amount@2", Upstream)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(sub.Nodes), []string{"feature:amount@2", "topic:tx", "source:transactions"}; !slices.Equal(got, want) {
		t.Errorf("nodes = %v, want %v", got, want)
	}
	// Without the file, the service is known from the dataset and model.
	if got, want := ids(g.Dependents("feature:count@1")), []string{"dataset:train@1", "model:fraud-gbm@1"}; !slices.Equal(got, want) {
		t.Errorf("dependents = %v, want %v", got, want)
	}
}

func TestParseNode(t *testing.T) {
	for _, ok := range []string{"topic:tx", "feature:a@1", "service:s", "dataset:d@2", "model:m@3", "consumer:c", "source:s"} {
		if _, _, err := ParseNode(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"feature:a", "model:m@x", "table:t", "feature:", "count@1"} {
		if _, _, err := ParseNode(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func change(p Plan, kind, object string) *Change {
	for i, c := range p.Changes {
		if c.Kind == kind && c.Object == object {
			return &p.Changes[i]
		}
	}
	return nil
}

func TestDiff(t *testing.T) {
	current := file(t, baseFeatures, baseServices)
	v := catalog(t, current)
	users := Consumers{"count@1": {"fraud-api": 7}}

	t.Run("the same file changes nothing", func(t *testing.T) {
		p := Diff(current, v, current, users)
		if len(p.Changes) != 0 || p.Breaking {
			t.Errorf("plan = %+v", p)
		}
	})
	t.Run("additions and a deprecation break nothing", func(t *testing.T) {
		next := file(t, strings.Replace(baseFeatures, "window: 1d, owner", "window: 1d, deprecated: true, owner", 1)+
			`  - {name: count, version: 2, entity: user, source: transactions, aggregation: count, window: 30d, owner: risk-team, description: d}
  - {name: fresh, version: 1, entity: user, source: transactions, aggregation: max, field: amount, window: 1d, owner: new-team, description: d}
`, baseServices+`  - {name: extra, owner: x-team, description: d, features: [fresh@1]}
`)
		p := Diff(next, v, current, users)
		if p.Breaking {
			t.Errorf("breaking: %+v", p)
		}
		for _, want := range [][2]string{{VersionAdded, "feature:count@2"}, {FeatureAdded, "feature:fresh@1"}, {Deprecated, "feature:amount@1"}, {ServiceAdded, "service:extra"}} {
			if change(p, want[0], want[1]) == nil {
				t.Errorf("no %s %s in %+v", want[0], want[1], p.Changes)
			}
		}
		if len(p.Changes) != 4 {
			t.Errorf("%d changes, want 4: %+v", len(p.Changes), p.Changes)
		}
		if c := change(p, Deprecated, "feature:amount@1"); !slices.Equal(c.Owners, []string{"ds-team", "fraud-team", "ml-team"}) {
			t.Errorf("deprecation owners = %v", c.Owners)
		}
	})
	t.Run("redefining in place is refused and lists the dependents and owners", func(t *testing.T) {
		next := file(t, strings.Replace(baseFeatures, "aggregation: count, window: 7d", "aggregation: count, window: 14d", 1), baseServices)
		p := Diff(next, v, current, users)
		c := change(p, Redefined, "feature:count@1")
		if c == nil || !c.Breaking || !p.Breaking {
			t.Fatalf("plan = %+v", p)
		}
		if got, want := ids(c.Dependents), []string{"service:fraud", "service:spend", "dataset:train@1", "model:fraud-gbm@1", "consumer:fraud-api"}; !slices.Equal(got, want) {
			t.Errorf("dependents = %v, want %v", got, want)
		}
		if want := []string{"ds-team", "fraud-api", "fraud-team", "ml-team", "payments-team"}; !slices.Equal(c.Owners, want) {
			t.Errorf("owners = %v, want %v", c.Owners, want)
		}
		if !strings.Contains(strings.Join(c.Detail, "\n"), `window_size_ms: registered "604800000", now "1209600000"`) ||
			!strings.Contains(strings.Join(c.Detail, "\n"), "bump the version (count@2)") {
			t.Errorf("detail = %q", c.Detail)
		}
	})
	t.Run("removing a version with dependents breaks, without dependents does not", func(t *testing.T) {
		// amount@1 leaves: the fraud service must move to amount@2 (listing
		// a removed version is a config error, see TestRemovedFeatureInService).
		next := file(t, strings.SplitAfterN(baseFeatures, "\n", 2)[0]+strings.SplitAfterN(baseFeatures, "\n", 3)[2],
			strings.Replace(baseServices, "[count@1, amount@1]", "[count@1, amount@2]", 1))
		p := Diff(next, v, current, nil)
		rm := change(p, Removed, "feature:amount@1")
		if rm == nil || !rm.Breaking || !p.Breaking {
			t.Fatalf("plan = %+v", p)
		}
		if got, want := ids(rm.Dependents), []string{"service:fraud", "dataset:train@1", "model:fraud-gbm@1"}; !slices.Equal(got, want) {
			t.Errorf("dependents = %v, want %v", got, want)
		}
		sc := change(p, ServiceChanged, "service:fraud")
		if sc == nil || !sc.Breaking || !slices.Equal(sc.Detail, []string{"- amount@1", "+ amount@2"}) {
			t.Errorf("service change = %+v", sc)
		}
		lone := file(t, baseFeatures+`  - {name: lone, version: 1, entity: user, source: transactions, aggregation: count, window: 1d, owner: o, description: d}
`, baseServices)
		v2 := catalog(t, lone)
		p = Diff(current, v2, lone, nil)
		if rm := change(p, Removed, "feature:lone@1"); rm == nil || rm.Breaking || p.Breaking || len(rm.Dependents) != 0 {
			t.Errorf("plan = %+v", p)
		}
	})
	t.Run("a version removed before is not reported again", func(t *testing.T) {
		// current (the running file) has no lone@1 although it is registered.
		lone := file(t, baseFeatures+`  - {name: lone, version: 1, entity: user, source: transactions, aggregation: count, window: 1d, owner: o, description: d}
`, baseServices)
		p := Diff(current, catalog(t, lone), current, nil)
		if len(p.Changes) != 0 {
			t.Errorf("plan = %+v", p)
		}
		if p = Diff(current, catalog(t, lone), nil, nil); change(p, Removed, "feature:lone@1") == nil {
			t.Errorf("without the running file, every registered version missing is removed: %+v", p)
		}
	})
	t.Run("without the current file, services come from the catalog", func(t *testing.T) {
		next := file(t, baseFeatures, `services:
  - {name: spend, owner: payments-team, description: d, features: [count@1, amount]}
`)
		p := Diff(next, v, nil, nil)
		c := change(p, ServiceRemoved, "service:fraud")
		if c == nil || !c.Breaking || !slices.Equal(ids(c.Dependents), []string{"dataset:train@1", "model:fraud-gbm@1"}) {
			t.Errorf("plan = %+v", p)
		}
		// spend is unknown to the catalog (no dataset or model): added.
		if change(p, ServiceAdded, "service:spend") == nil {
			t.Errorf("plan = %+v", p)
		}
	})
}

// recordFile applies to v the records a worker start with cfg writes
// (registry.RecordFile): its services and feature metadata; retired marks
// versions and services cfg no longer has.
func recordFile(t *testing.T, v *registry.View, cfg *config.File, retired ...string) {
	t.Helper()
	svcs, metas, err := registry.FileRecords(cfg, nil, time.Unix(60, 0).UTC(), "ann via w1")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range retired {
		if n, ok := strings.CutPrefix(id, "service:"); ok {
			svcs = append(svcs, registry.Service{Name: n, Owner: "gone-team", Features: []string{"count@1"}, Resolved: []string{"count@1"}, Retired: true})
		} else {
			metas = append(metas, registry.FeatureMeta{Feature: id, Owner: "gone-team", Retired: true})
		}
	}
	for _, s := range svcs {
		r, err := registry.ServiceRecord("reg", s)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Apply(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range metas {
		r, err := registry.MetaRecord("reg", m)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Apply(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
}

// Without --current, plan takes the running file's services, owners and
// deprecations from the catalog's records (what every worker start
// writes): the same file plans nothing, a removed service shows its
// dependents, and what was removed or deprecated before is not reported
// again.
func TestDiffWithTheCatalogsRecordsOfTheRunningFile(t *testing.T) {
	services := `services:
  - {name: fraud, owner: fraud-team, description: d, features: [count@1, amount@1]}
  - {name: spend, owner: payments-team, description: d, features: [count@1, amount], models: [fraud-gbm]}
`
	deprecated := strings.Replace(baseFeatures, "window: 1d, owner", "window: 1d, deprecated: true, owner", 1)
	running := file(t, deprecated, services)
	lone := file(t, deprecated+`  - {name: lone, version: 1, entity: user, source: transactions, aggregation: count, window: 1d, owner: o, description: d}
`, services)
	v := catalog(t, lone) // lone@1 is registered, and retired below
	recordFile(t, v, running, "lone@1", "service:old")
	// A dataset built from old, which the catalog records as retired.
	r, err := registry.DatasetRecord("reg", registry.Dataset{Name: "old_train", Version: 1, Service: "old", Entity: "user"})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Apply(r.Key, r.Value); err != nil {
		t.Fatal(err)
	}

	if p := Diff(running, v, nil, nil); len(p.Changes) != 0 || p.Breaking {
		t.Errorf("the running file against its own records: %+v", p.Changes)
	}
	if p := Diff(running, registry.NewView(), nil, nil); change(p, ServiceAdded, "service:spend") == nil {
		t.Errorf("an empty catalog must see spend as added: %+v", p.Changes) // the check above is not vacuous
	}

	next := file(t, deprecated, `services:
  - {name: fraud, owner: fraud-team, description: d, features: [count@1, amount@1]}
`)
	p := Diff(next, v, nil, nil)
	c := change(p, ServiceRemoved, "service:spend")
	if c == nil || !c.Breaking || !p.Breaking {
		t.Fatalf("removing spend: %+v", p.Changes)
	}
	if got, want := ids(c.Dependents), []string{"model:fraud-gbm@1"}; !slices.Equal(got, want) {
		t.Errorf("spend's dependents = %v, want %v", got, want)
	}
	if len(p.Changes) != 1 {
		t.Errorf("want only spend removed (not lone@1 or old, removed before; not amount@1's deprecation, recorded): %+v", p.Changes)
	}

	// The file's spend names fraud-gbm among its models: it links every
	// version, as the catalog's record of spend does.
	if got, want := ids(Build(running, v, nil).Dependents("service:spend")), []string{"model:fraud-gbm@1"}; !slices.Equal(got, want) {
		t.Errorf("file graph: spend's dependents = %v, want %v", got, want)
	}

	g := Build(nil, v, nil)
	if n, ok := g.Node("service:spend"); !ok || n.Owner != "payments-team" {
		t.Errorf("catalog-only graph: spend = %+v (found %v)", n, ok)
	}
	if n, _ := g.Node("feature:amount@1"); !n.Deprecated || n.Owner != "payments-team" {
		t.Errorf("catalog-only graph: amount@1 = %+v, want its recorded owner and deprecation", n)
	}
	// spend's bare "amount" was recorded resolved (to amount@2).
	if got := ids(g.Dependents("feature:amount@2")); !slices.Contains(got, "service:spend") {
		t.Errorf("amount@2's dependents %v, want service:spend", got)
	}
	d, err := Describe("service:spend", g, nil, v, nil)
	if err != nil || d.Service == nil || !slices.Equal(d.Service.Resolved, []string{"count@1", "amount@2"}) ||
		!strings.HasPrefix(d.Service.At, "registry (recorded") {
		t.Errorf("describe service:spend from the catalog: %+v, %v", d.Service, err)
	}
}

// Removing a version a service still lists is a config error, with its
// line, before any plan.
func TestRemovedFeatureInService(t *testing.T) {
	doc := `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: count, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, owner: o, description: d}
services:
  - {name: fraud, owner: fraud-team, description: d, features: [count@1, amount@1]}
`
	_, err := config.Parse("f.yaml", []byte(doc), schemas.Files, ".")
	if err == nil || !strings.Contains(err.Error(), "f.yaml:8") || !strings.Contains(err.Error(), "amount@1") {
		t.Errorf("err = %v", err)
	}
}

func TestDescribe(t *testing.T) {
	cfg := file(t, baseFeatures, baseServices)
	v := catalog(t, cfg)
	c := Consumers{"count@1": {"fraud-api": 7}}
	g := Build(cfg, v, c)
	d, err := Describe("feature:count@1", g, cfg, v, c)
	if err != nil {
		t.Fatal(err)
	}
	if d.Feature == nil || d.Feature.Owner != "risk-team" || d.Feature.At != "f.yaml:6" || d.Definition == nil || d.Definition.RegisteredBy != "ann" ||
		d.Consumers["fraud-api"] != 7 || !slices.Equal(ids(d.Upstream), []string{"topic:tx", "source:transactions"}) || len(d.Downstream) != 5 {
		t.Errorf("feature: %+v", d)
	}
	d, err = Describe("service:spend", g, cfg, v, c)
	if err != nil {
		t.Fatal(err)
	}
	if d.Service == nil || !slices.Equal(d.Service.Resolved, []string{"count@1", "amount@2"}) || d.Service.Owner != "payments-team" {
		t.Errorf("service: %+v", d.Service)
	}
	d, err = Describe("model:fraud-gbm@1", g, cfg, v, c)
	if err != nil {
		t.Fatal(err)
	}
	text := ""
	for _, f := range d.Fields() {
		text += f[0] + ": " + f[1] + "\n"
	}
	for _, want := range []string{"owner: ml-team", "dataset: train@1", "service: fraud", "upstream: topic:tx, source:transactions, feature:amount@1, feature:count@1, service:fraud, dataset:train@1", "downstream: -"} {
		if !strings.Contains(text, want) {
			t.Errorf("model description lacks %q:\n%s", want, text)
		}
	}
	if _, err := Describe("dataset:nope@1", g, cfg, v, c); err == nil {
		t.Error("describe of an unknown dataset: no error")
	}
}
