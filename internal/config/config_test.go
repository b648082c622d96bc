package config

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/schemas"
)

// schemaFS holds the demo schemas at its root, as Parse(..., schemaFS(t), ".")
// expects for "schema: transaction.avsc".
func schemaFS(t testing.TB) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, name := range []string{"transaction.avsc", "login.avsc"} {
		data, err := fs.ReadFile(schemas.Files, name)
		if err != nil {
			t.Fatalf("read embedded %s: %v", name, err)
		}
		fsys[name] = &fstest.MapFile{Data: data}
	}
	return fsys
}

func mustParse(t testing.TB, doc string) *File {
	t.Helper()
	f, err := Parse("features.yaml", []byte(doc), schemaFS(t), ".")
	if err != nil {
		t.Fatalf("Parse: %v\n--- file ---\n%s", err, doc)
	}
	return f
}

// header declares two entities and two sources over the demo schemas;
// tests append a features: list.
const header = `entities:
  - name: user
    key: user_id
  - name: merchant
    key: merchant_id
sources:
  - name: transactions
    topic: transactions
    schema: transaction.avsc
    event_time: ts
  - name: logins
    topic: logins
    schema: login.avsc
    event_time: ts
`

func TestLoadDemo(t *testing.T) {
	f, err := LoadFS(schemas.Files, "demo.yaml")
	if err != nil {
		t.Fatalf("LoadFS(schemas.Files, demo.yaml): %v", err)
	}
	if f.Path != "demo.yaml" {
		t.Errorf("Path = %q, want demo.yaml", f.Path)
	}
	if _, err := LoadFS(schemas.Files, "nope.yaml"); !errors.Is(err, fs.ErrNotExist) || errors.As(err, new(*Error)) {
		t.Errorf("LoadFS(missing file) = %v, want a wrapped fs.ErrNotExist, not a *Error", err)
	}
	if len(f.Features) != 26 {
		t.Fatalf("got %d features, want 26", len(f.Features))
	}
	for _, name := range []string{"txn_last_merchant", "txn_recent_merchants"} { // the string features
		if ft, err := f.Feature(name); err != nil || ft.OutputType() != aggregations.TypeString || !ft.Window.Strings() {
			t.Errorf("%s: %v: want a string feature", name, err)
		}
	}
	want := Kafka{FeatureLogTopic: DefaultFeatureLogTopic, DeadLetterTopic: DefaultDeadLetterTopic, LookupLogTopic: DefaultLookupLogTopic, RegistryTopic: DefaultRegistryTopic, Group: DefaultGroup, Partitions: DefaultPartitions, ReplicationFactor: DefaultReplicationFactor, RepartitionPrefix: DefaultRepartitionPrefix}
	if f.Kafka != want {
		t.Errorf("Kafka = %+v, want defaults %+v", f.Kafka, want)
	}
	hashes := map[string]string{}
	for _, ft := range f.Features {
		if ft.ID != ft.Name+"@1" {
			t.Errorf("%s: ID = %q", ft.Name, ft.ID)
		}
		if ft.IsDerived() {
			if ft.SourceRef != nil || ft.EntityRef == nil || ft.EntityRef.Name != ft.Entity || len(ft.Derived.Inputs) == 0 {
				t.Errorf("derived %s: source %v entity %v inputs %v", ft.ID, ft.SourceRef, ft.EntityRef, ft.Derived.Inputs)
			}
			continue
		}
		if ft.SourceRef == nil || ft.SourceRef.Name != ft.Source || ft.EntityRef == nil || ft.EntityRef.Name != ft.Entity {
			t.Errorf("%s: refs not linked: source %v entity %v", ft.ID, ft.SourceRef, ft.EntityRef)
			continue
		}
		// A feature of the entity its source's Kafka key identifies is
		// computed in place; any other is re-keyed.
		if direct := ft.SourceRef.Entity == ft.EntityRef; direct != (ft.Repartition == nil) ||
			!direct && (ft.Repartition.Entity != ft.EntityRef || ft.Repartition.Source != ft.SourceRef) {
			t.Errorf("%s: source %s keyed by %s, entity %s, repartition %+v", ft.ID, ft.Source, ft.SourceRef.Entity.Name, ft.Entity, ft.Repartition)
		}
		if !slices.Contains(ft.SourceRef.Features, ft) {
			t.Errorf("%s: missing from %s.Features", ft.ID, ft.Source)
		}
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(ft.Hash) {
			t.Errorf("%s: Hash = %q, want 64 hex digits", ft.ID, ft.Hash)
		}
		if other, dup := hashes[ft.Hash]; dup {
			t.Errorf("%s and %s have different definitions but the same hash", ft.ID, other)
		}
		hashes[ft.Hash] = ft.ID
		if err := ft.Window.Validate(); err != nil {
			t.Errorf("%s: window %v: %v", ft.ID, ft.Window, err)
		}
	}
	for _, s := range f.Sources {
		if s.Schema == nil {
			t.Errorf("source %s: schema not loaded", s.Name)
		}
		// Source.Features is exactly the features naming the source, in file order.
		var fed []*Feature
		for _, ft := range f.Features {
			if ft.Source == s.Name {
				fed = append(fed, ft)
			}
		}
		if !slices.Equal(s.Features, fed) {
			t.Errorf("source %s: Features = %v, want %v", s.Name, ids(s.Features), ids(fed))
		}
	}

	avg, err := f.Feature("txn_amount_avg_30d")
	if err != nil {
		t.Fatal(err)
	}
	if avg.Aggregation != aggregations.Avg || avg.Field != "amount" || avg.Window.Size != 30*aggregations.Day ||
		avg.Window.Hop != aggregations.DefaultHop(30*aggregations.Day) || avg.Default != nil {
		t.Errorf("txn_amount_avg_30d = %+v", avg)
	}
	last, err := f.Feature("txn_amount_last")
	if err != nil {
		t.Fatal(err)
	}
	if !last.Window.Lifetime() || last.Aggregation != aggregations.Last {
		t.Errorf("txn_amount_last: window %v aggregation %v, want lifetime last", last.Window, last.Aggregation)
	}
	large, err := f.Feature("txn_large_count_7d")
	if err != nil {
		t.Fatal(err)
	}
	if large.Where != "amount > 100.0 && currency != 'JPY'" || large.Filter == nil {
		t.Errorf("txn_large_count_7d: where %q, filter %v", large.Where, large.Filter)
	}
	if fresh, err := f.Feature("txn_amount_last_fresh"); err != nil || fresh.TTL != 30*aggregations.Day {
		t.Errorf("txn_amount_last_fresh: %v, ttl %v; want 30d", err, fresh)
	}
	if ratio, err := f.Feature("txn_spend_ratio_1h_30d"); err != nil || !ratio.IsDerived() || ids(ratio.Derived.Inputs)[0] != "txn_amount_avg_30d@1" {
		t.Errorf("txn_spend_ratio_1h_30d: %v, %+v; want derived from txn_amount_avg_30d@1 and txn_amount_sum_1h@1", err, ratio)
	}
	if avg.Where != "" || avg.Filter != nil {
		t.Errorf("txn_amount_avg_30d has where %q, filter %v; want none", avg.Where, avg.Filter)
	}
	if got, want := f.Topics(), []string{"logins", "transactions"}; !slices.Equal(got, want) {
		t.Errorf("Topics() = %v, want %v", got, want)
	}
	if s, ok := f.SourceByTopic("logins"); !ok || s.Name != "logins" {
		t.Errorf("SourceByTopic(logins) = %v, %v", s, ok)
	}
	if _, ok := f.SourceByTopic("featurepipe.features"); ok {
		t.Error("SourceByTopic found featurepipe's own topic")
	}
	var users []*Feature // every feature but the merchant and (user, merchant) ones, in file order
	for _, ft := range f.Features {
		if ft.Entity == "user" {
			users = append(users, ft)
		}
	}
	if got := f.EntityFeatures("user"); len(users) != 24 || !slices.Equal(got, users) {
		t.Errorf("EntityFeatures(user) = %v, want the 24 user features in file order", ids(got))
	}
	if got := ids(f.EntityFeatures("merchant")); !slices.Equal(got, []string{"merchant_txn_count_1d@1"}) {
		t.Errorf("EntityFeatures(merchant) = %v, want merchant_txn_count_1d@1", got)
	}
	var reps []string
	for _, r := range f.Repartitions() {
		reps = append(reps, r.Topic)
	}
	if want := []string{"featurepipe.repartition.transactions.merchant", "featurepipe.repartition.transactions.user_merchant"}; !slices.Equal(reps, want) {
		t.Errorf("Repartitions() = %v, want %v", reps, want)
	}
}

func ids(fs []*Feature) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.ID
	}
	return out
}

func TestLoadResolvesSchemasRelativeToTheFile(t *testing.T) {
	dir := t.TempDir()
	data, err := fs.ReadFile(schemas.Files, "transaction.avsc")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "conf", "schemas"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf", "schemas", "transaction.avsc"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(schema string) string {
		p := filepath.Join(dir, "conf", "features.yaml")
		doc := strings.Replace(header, "schema: transaction.avsc", "schema: "+schema, 1)
		doc = strings.Replace(doc, "schema: login.avsc", "schema: "+schema, 1) + `features:
  - name: n
    version: 1
    entity: user
    source: transactions
    aggregation: count
    window: 1h
    owner: o
    description: d
`
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The test's working directory is the package directory, not dir/conf, so
	// success proves the path is taken relative to the feature file.
	p := write("schemas/transaction.avsc")
	f, err := Load(p)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if f.Path != p || f.Sources[0].Schema == nil || f.Sources[0].SchemaPath != "schemas/transaction.avsc" {
		t.Errorf("Load = path %q, schema %v, schema path %q", f.Path, f.Sources[0].Schema, f.Sources[0].SchemaPath)
	}

	p = write("schemas/missing.avsc")
	_, err = Load(p)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Load with a missing schema: got %v, want *Error", err)
	}
	resolved := filepath.Join(dir, "conf", "schemas", "missing.avsc")
	if e.File != p || e.Field != "sources[0].schema" || !strings.Contains(e.Msg, resolved) {
		t.Errorf("error = %v; want file %s, field sources[0].schema and the resolved path %s", e, p, resolved)
	}

	if _, err := Load(filepath.Join(dir, "nope.yaml")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing file) = %v, want an fs.ErrNotExist", err)
	}
}

// validFeature is a valid feature of entity user fed by transactions, for
// tests to append after header + "features:\n" or to edit one line of.
const validFeature = `  - name: base
    version: 1
    entity: user
    source: transactions
    aggregation: avg
    field: amount
    window: 7d
    owner: payments
    description: Average amount.
`

// wantMarker marks the line an invalid file's problem must be reported on.
const wantMarker = "# want"

func markedLine(t *testing.T, doc string) int {
	t.Helper()
	for i, line := range strings.Split(doc, "\n") {
		if strings.Contains(line, wantMarker) {
			return i + 1
		}
	}
	t.Fatalf("no %q marker in:\n%s", wantMarker, doc)
	return 0
}

// TestInvalidFiles checks each rule on a file that breaks only that rule:
// exactly one problem, on the marked line, naming the field, saying why.
func TestInvalidFiles(t *testing.T) {
	// edit returns validFeature with each old string replaced by the new one
	// after it. A case whose old string is missing loses its "# want" marker
	// or its problem, so it fails rather than passing vacuously.
	edit := func(oldnew ...string) string { return strings.NewReplacer(oldnew...).Replace(validFeature) }
	tests := []struct {
		name  string
		doc   string
		line  int // when the file has no marker
		field string
		msg   string
	}{
		{
			name: "unknown feature key is named with the allowed keys",
			doc: header + "features:\n" + validFeature + `    colour: red # want
`,
			field: "features[0].colour",
			msg:   `unknown key "colour"; allowed: name, version, entity, source, aggregation, field, window, hop, owner, description, tags, deprecated, replaced_by, sunset, default, where, ttl, expression, inputs, monitor, percentile`,
		},
		{
			name: "unknown kafka key suggests the close one",
			doc: `kafka:
  partitons: 3 # want
` + header + "features:\n" + validFeature,
			field: "kafka.partitons",
			msg:   "did you mean partitions?",
		},
		{
			name:  "unknown top-level key",
			doc:   header + "feature_groups: [] # want\nfeatures:\n" + validFeature,
			field: "feature_groups",
			msg:   `unknown key "feature_groups"; allowed: kafka, entities, sources, features, services`,
		},
		{
			name:  "aggregation must be known",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: avgg # want"),
			field: "features[0].aggregation",
			msg:   `unknown aggregation "avgg"; allowed: count, sum, avg, min, max, last, variance, stddev, variance_samp, stddev_samp, first, approx_distinct, approx_percentile`,
		},
		{
			name:  "avg requires a field",
			doc:   header + "features:\n" + edit("name: base", "name: base # want", "    field: amount\n", ""),
			field: "features[0].field",
			msg:   "required for aggregation avg",
		},
		{
			name:  "aggregated field must be numeric",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: max", "field: amount", "field: currency # want"),
			field: "features[0].field",
			msg:   `field "currency" is of type string; aggregation max needs a numeric field (double, float, int or long); numeric fields: amount, ts`,
		},
		{
			name:  "boolean is not numeric",
			doc:   header + "features:\n" + edit("source: transactions", "source: logins", "aggregation: avg", "aggregation: sum", "field: amount", "field: success # want"),
			field: "features[0].field",
			msg:   "is of type boolean; aggregation sum needs a numeric field",
		},
		{
			name:  "a string field names the aggregations that take strings",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: sum", "field: amount", "field: merchant_id # want"),
			field: "features[0].field",
			msg:   `field "merchant_id" is of type string; aggregation sum needs a numeric field (double, float, int or long); numeric fields: amount, ts; aggregations of string fields: last, first, approx_distinct, first_k, last_k, top_k`,
		},
		{
			name:  "a string feature has no numeric default",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: last", "field: amount", "field: merchant_id", "    owner: payments\n", "    owner: payments\n    default: 0 # want\n"),
			field: "features[0].default",
			msg:   `default is a number and last of string field "merchant_id" is a string: a string feature's empty window is null; remove default`,
		},
		{
			name:  "a boolean field names the aggregations that take booleans",
			doc:   header + "features:\n" + edit("source: transactions", "source: logins", "aggregation: avg", "aggregation: min", "field: amount", "field: success # want"),
			field: "features[0].field",
			msg:   "aggregations of boolean fields: last, first, approx_distinct, first_k, last_k, top_k",
		},
		{
			name:  "aggregated field must exist in the source schema",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: sum", "field: amount", "field: amont # want"),
			field: "features[0].field",
			msg:   `field "amont" is not in schema featurepipe.demo.Transaction of source "transactions"`,
		},
		{
			name:  "count may name a field, which must exist",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: count", "field: amount", "field: nope # want"),
			field: "features[0].field",
			msg:   `field "nope" is not in schema`,
		},
		{
			name:  "entity must be defined",
			doc:   header + "features:\n" + edit("entity: user", "entity: usr # want"),
			field: "features[0].entity",
			msg:   `unknown entity "usr"; did you mean "user"? defined entities: merchant, user`,
		},
		{
			name:  "source must be defined",
			doc:   header + "features:\n" + edit("source: transactions", "source: payments # want"),
			field: "features[0].source",
			msg:   `unknown source "payments"; defined sources: logins, transactions`,
		},
		{
			name:  "name and version are unique",
			doc:   header + "features:\n" + validFeature + edit("version: 1", "version: 1 # want", "aggregation: avg", "aggregation: sum"),
			field: "features[1].version",
			msg:   "feature base@1 is already defined at line 16; a changed definition needs a new version",
		},
		{
			name:  "window must parse",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: count", "    field: amount\n", "", "window: 7d", "window: 30x # want"),
			field: "features[0].window",
			msg:   `invalid duration "30x"`,
		},
		{
			name:  "hop longer than the window",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: count", "    field: amount\n", "", "window: 7d", "window: 1h\n    hop: 2h # want"),
			field: "features[0].hop",
			msg:   "hop 2h is longer than window 1h",
		},
		{
			name:  "hop must parse",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: count", "    field: amount\n", "", "window: 7d", "window: 1h\n    hop: soon # want"),
			field: "features[0].hop",
			msg:   `invalid duration "soon"`,
		},
		{
			name:  "an unparsable window is blamed even when a hop is given",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: count", "    field: amount\n", "", "window: 7d", "window: 30x # want\n    hop: 1h"),
			field: "features[0].window",
			msg:   `invalid duration "30x"`,
		},
		{
			name:  "a window that is not a multiple of the default hop is blamed on the window",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: count", "    field: amount\n", "", "window: 7d", "window: 300h # want"),
			field: "features[0].window",
			msg:   "invalid window: window 300h is not a whole multiple of hop 1d (with the default hop 1d; set hop explicitly)",
		},
		{
			name:  "a window that is not a multiple of the given hop is blamed on the hop",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: count", "    field: amount\n", "", "window: 7d", "window: 10m\n    hop: 3m # want"),
			field: "features[0].hop",
			msg:   "invalid window: window 10m is not a whole multiple of hop 3m",
		},
		{
			name:  "a lifetime window with an unparsable hop is blamed on the hop",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: count", "    field: amount\n", "", "window: 7d", "window: lifetime\n    hop: soon # want"),
			field: "features[0].hop",
			msg:   `invalid duration "soon"`,
		},
		{
			name:  "one source feeds one entity",
			doc:   header + "features:\n" + validFeature + edit("name: base", "name: merchant_txn_count", "entity: user", "entity: merchant # want"),
			field: "features[1].entity",
			msg:   `source "transactions" already feeds entity "user" (features[0], line 16); the Kafka key of a source's records is its entity's key`,
		},
		{
			name: "event_time must be in the schema",
			doc: strings.Replace(header, "schema: login.avsc\n    event_time: ts", "schema: login.avsc\n    event_time: time # want", 1) +
				"features:\n" + validFeature,
			field: "sources[1].event_time",
			msg:   `field "time" is not in schema featurepipe.demo.Login (login.avsc); fields: user_id, country, success, ts`,
		},
		{
			name: "event_time must be a long or int",
			doc: strings.Replace(header, "event_time: ts", "event_time: currency # want", 1) +
				"features:\n" + validFeature,
			field: "sources[0].event_time",
			msg:   "event_time must be an Avro long or int",
		},
		{
			name: "schema file must load",
			doc: strings.Replace(header, "schema: login.avsc", "schema: schemas/missing.avsc # want", 1) +
				"features:\n" + validFeature,
			field: "sources[1].schema",
			msg:   "cannot load schema schemas/missing.avsc",
		},
		{
			name: "schema path stays inside the file system",
			doc: strings.Replace(header, "schema: login.avsc", "schema: ../login.avsc # want", 1) +
				"features:\n" + validFeature,
			field: "sources[1].schema",
			msg:   "must be relative to the feature file",
		},
		{
			name: "YAML syntax error is reported with its line",
			doc: header + "features:\n" + validFeature + `    tags: a: b # want
`,
			msg: "invalid YAML: mapping values are not allowed in this context",
		},
		{
			name:  "version 0 is not a version",
			doc:   header + "features:\n" + edit("version: 1", "version: 0 # want"),
			field: "features[0].version",
			msg:   "must be a positive integer (1, 2, ...); got 0",
		},
		{
			name:  "version is required",
			doc:   header + "features:\n" + edit("name: base", "name: base # want", "    version: 1\n", ""),
			field: "features[0].version",
			msg:   "required: a positive integer",
		},
		{
			name:  "version is an integer",
			doc:   header + "features:\n" + edit("version: 1", `version: "one" # want`),
			field: "features[0].version",
			msg:   `expected an integer; got "one"`,
		},
		{
			name:  "owner is required",
			doc:   header + "features:\n" + edit("name: base", "name: base # want", "    owner: payments\n", ""),
			field: "features[0].owner",
			msg:   "required: the team answerable for the feature",
		},
		{
			name:  "feature names are lower snake case",
			doc:   header + "features:\n" + edit("name: base", "name: TxnCount # want"),
			field: "features[0].name",
			msg:   `invalid feature name "TxnCount"`,
		},
		{
			name: "entity names are unique",
			doc: strings.Replace(header, "sources:\n", "  - name: user # want\n    key: merchant_id\nsources:\n", 1) +
				"features:\n" + validFeature,
			field: "entities[2].name",
			msg:   `entity "user" is already defined at line 2; entity names are unique`,
		},
		{
			name: "source names are unique",
			doc: header + `  - name: logins # want
    topic: logins_v2
    schema: login.avsc
    event_time: ts
features:
` + validFeature,
			field: "sources[2].name",
			msg:   `source "logins" is already defined at line 11`,
		},
		{
			name:  "entity key must be in the source schema",
			doc:   strings.Replace(header, "key: user_id", "key: uid", 1) + "features:\n" + edit("entity: user", "entity: user # want"),
			field: "features[0].entity",
			msg:   `entity "user" is keyed by field "uid", which is not in schema featurepipe.demo.Transaction of source "transactions"`,
		},
		{
			name:  "entity key must be a string, long or int",
			doc:   strings.Replace(header, "key: user_id", "key: amount", 1) + "features:\n" + edit("entity: user", "entity: user # want"),
			field: "features[0].entity",
			msg:   `which is of type double in schema featurepipe.demo.Transaction of source "transactions"; an entity key must be a string, long or int`,
		},
		{
			name:  "source topic differs from featurepipe's topics",
			doc:   strings.Replace(header, "topic: logins", "topic: featurepipe.dlq # want", 1) + "features:\n" + validFeature,
			field: "sources[1].topic",
			msg:   `topic "featurepipe.dlq" is featurepipe's own topic (kafka.dead_letter_topic)`,
		},
		{
			name:  "source topics are distinct",
			doc:   strings.Replace(header, "topic: logins", "topic: transactions # want", 1) + "features:\n" + validFeature,
			field: "sources[1].topic",
			msg:   `topic "transactions" is already read by source "transactions" (line 7)`,
		},
		{
			name:  "topic names are legal Kafka names",
			doc:   strings.Replace(header, "topic: logins", "topic: log ins # want", 1) + "features:\n" + validFeature,
			field: "sources[1].topic",
			msg:   `invalid Kafka topic name "log ins"`,
		},
		{
			name: "kafka topics are distinct",
			doc: `kafka:
  lookup_log_topic: featurepipe.features # want
` + header + "features:\n" + validFeature,
			field: "kafka.lookup_log_topic",
			msg:   `topic "featurepipe.features" is also kafka.feature_log_topic`,
		},
		{
			name: "a kafka topic may not take another's default",
			doc: `kafka:
  feature_log_topic: featurepipe.dlq # want
` + header + "features:\n" + validFeature,
			field: "kafka.feature_log_topic",
			msg:   `topic "featurepipe.dlq" is also the default of kafka.dead_letter_topic`,
		},
		{
			name: "partitions within 1..10000",
			doc: `kafka:
  partitions: 10001 # want
` + header + "features:\n" + validFeature,
			field: "kafka.partitions",
			msg:   "must be between 1 and 10000; got 10001",
		},
		{
			name:  "count and sum take no default",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: sum") + "    default: 1 # want\n",
			field: "features[0].default",
			msg:   "sum of an empty window is always 0",
		},
		{
			name:  "approx_distinct takes no default (its empty window is 0)",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: approx_distinct") + "    default: 1 # want\n",
			field: "features[0].default",
			msg:   "approx_distinct of an empty window is always 0; default applies only to the aggregations whose empty window is null (avg, min, max, last, variance, stddev, variance_samp, stddev_samp, first, approx_percentile)",
		},
		{
			name:  "approx_percentile requires a percentile",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: approx_percentile # want"),
			field: "features[0].percentile",
			msg:   "required for aggregation approx_percentile: the quantile to estimate, between 0 and 1",
		},
		{
			name:  "a percentile is a fraction strictly between 0 and 1",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: approx_percentile") + "    percentile: 95 # want\n",
			field: "features[0].percentile",
			msg:   "95 is not between 0 and 1 (exclusive); write the quantile as a fraction, e.g. 0.95",
		},
		{
			name:  "percentile 1 is rejected",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: approx_percentile") + "    percentile: 1 # want\n",
			field: "features[0].percentile",
			msg:   "1 is not between 0 and 1 (exclusive)",
		},
		{
			name:  "percentile 0 is rejected",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: approx_percentile") + "    percentile: 0 # want\n",
			field: "features[0].percentile",
			msg:   "0 is not between 0 and 1 (exclusive)",
		},
		{
			name:  "percentile applies only to approx_percentile",
			doc:   header + "features:\n" + validFeature + "    percentile: 0.5 # want\n",
			field: "features[0].percentile",
			msg:   "applies only to aggregation approx_percentile, not avg; remove percentile",
		},
		{
			name:  "percentile is a number",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: approx_percentile") + "    percentile: high # want\n",
			field: "features[0].percentile",
			msg:   `expected a finite number; got "high"`,
		},
		{
			name:  "last_k requires k",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: last_k # want"),
			field: "features[0].k",
			msg:   "required for aggregation last_k: how many events to keep, from 1 to 1000 (e.g. k: 10)",
		},
		{
			name:  "k above 1000 is rejected",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: first_k") + "    k: 1001 # want\n",
			field: "features[0].k",
			msg:   "1001 is out of range: keep from 1 to 1000 events",
		},
		{
			name:  "k 0 is rejected",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: last_k") + "    k: 0 # want\n",
			field: "features[0].k",
			msg:   "0 is out of range: keep from 1 to 1000 events",
		},
		{
			name:  "k is a whole number",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: last_k") + "    k: 2.5 # want\n",
			field: "features[0].k",
			msg:   "expected an integer; got",
		},
		{
			name:  "k applies only to first_k, last_k and top_k",
			doc:   header + "features:\n" + validFeature + "    k: 5 # want\n",
			field: "features[0].k",
			msg:   "applies only to aggregations first_k, last_k and top_k, not avg; remove k",
		},
		{
			name:  "top_k requires k",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: top_k # want"),
			field: "features[0].k",
			msg:   "required for aggregation top_k: how many of the most frequent values to give, from 1 to 1000 (e.g. k: 10)",
		},
		{
			name:  "top_k's k above 1000 is rejected",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: top_k") + "    k: 1001 # want\n",
			field: "features[0].k",
			msg:   "1001 is out of range: give from 1 to 1000 values",
		},
		{
			name:  "top_k takes no default",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: top_k") + "    k: 5\n    default: 1 # want\n",
			field: "features[0].default",
			msg:   "top_k is a list, null for an empty window; a number default does not apply to it; remove default",
		},
		{
			name:  "a list takes no default",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: last_k") + "    k: 5\n    default: 1 # want\n",
			field: "features[0].default",
			msg:   "last_k is a list, null for an empty window; a number default does not apply to it; remove default",
		},
		{
			name:  "the new aggregations require a field",
			doc:   header + "features:\n" + edit("aggregation: avg", "aggregation: stddev_samp", "name: base", "name: base # want", "    field: amount\n", ""),
			field: "features[0].field",
			msg:   "required for aggregation stddev_samp: the numeric event field to aggregate",
		},
		{
			name: "default is a number",
			doc: header + "features:\n" + validFeature + `    default: zero # want
`,
			field: "features[0].default",
			msg:   `expected a finite number; got "zero"`,
		},
		{
			name: "a key given twice",
			doc: header + "features:\n" + validFeature + `    window: 30d # want
`,
			field: "features[0].window",
			msg:   "key given twice (first at line 22)",
		},
		{
			name:  "replaced_by must name a defined version",
			doc:   header + "features:\n" + validFeature + "    deprecated: true\n    replaced_by: base@2 # want\n",
			field: "features[0].replaced_by",
			msg:   "replacement base@2 is not defined; versions of base: base@1",
		},
		{
			name:  "replaced_by must pin a version",
			doc:   header + "features:\n" + validFeature + "    deprecated: true\n    replaced_by: base # want\n",
			field: "features[0].replaced_by",
			msg:   `"base": name the replacement with its version, as name@version (e.g. base@2)`,
		},
		{
			name:  "a version cannot replace itself",
			doc:   header + "features:\n" + validFeature + "    deprecated: true\n    replaced_by: base@1 # want\n",
			field: "features[0].replaced_by",
			msg:   "cannot replace itself",
		},
		{
			name: "replacement of another entity",
			doc: header + "  - {name: by_merchant, topic: tx_by_merchant, schema: transaction.avsc, event_time: ts}\nfeatures:\n" + validFeature +
				"    deprecated: true\n    replaced_by: merchant_avg@1 # want\n" +
				"  - {name: merchant_avg, version: 1, entity: merchant, source: by_merchant, aggregation: avg, field: amount, window: 7d, owner: o, description: d}\n",
			field: "features[0].replaced_by",
			msg:   "replacement merchant_avg@1 belongs to entity merchant, not user",
		},
		{
			name:  "sunset must be a date",
			doc:   header + "features:\n" + validFeature + "    deprecated: true\n    sunset: 2027-02-30 # want\n",
			field: "features[0].sunset",
			msg:   `"2027-02-30" is not a date: write YYYY-MM-DD`,
		},
		{
			name:  "replaced_by only on a deprecated version",
			doc:   header + "features:\n" + validFeature + "    replaced_by: base@2 # want\n" + edit("version: 1", "version: 2"),
			field: "features[0].replaced_by",
			msg:   "applies to a deprecated version only: add deprecated: true",
		},
		{
			name:  "sunset only on a deprecated version",
			doc:   header + "features:\n" + validFeature + "    sunset: 2027-01-31 # want\n",
			field: "features[0].sunset",
			msg:   "applies to a deprecated version only",
		},
		{
			name:  "empty file",
			doc:   "",
			line:  1,
			field: "",
			msg:   "file is empty",
		},
		{
			name:  "where naming an unknown field",
			doc:   header + "features:\n" + validFeature + "    where: amont > 100.0 # want\n",
			field: "features[0].where",
			msg:   "column 1: undeclared reference to 'amont' (did you mean 'amount'?) (usable fields of schema featurepipe.demo.Transaction: user_id, merchant_id, amount, currency, ts)",
		},
		{
			name:  "where comparing a field with a value of another type",
			doc:   header + "features:\n" + validFeature + "    where: currency > 100.0 # want\n",
			field: "features[0].where",
			msg:   "column 10: found no matching overload for '_>_' applied to '(string, double)'",
		},
		{
			name:  "where of an int field compared with a double literal of the wrong kind",
			doc:   header + "features:\n" + validFeature + "    where: \"amount > 'big'\" # want\n",
			field: "features[0].where",
			msg:   "found no matching overload for '_>_' applied to '(double, string)'",
		},
		{
			name:  "where that is not boolean",
			doc:   header + "features:\n" + validFeature + "    where: amount * 2.0 # want\n",
			field: "features[0].where",
			msg:   `"amount * 2.0" is of type double; where must be a boolean expression, e.g. amount > 100.0`,
		},
		{
			name:  "where with a syntax error",
			doc:   header + "features:\n" + validFeature + "    where: \"amount > 100.0 &&\" # want\n",
			field: "features[0].where",
			msg:   "Syntax error: mismatched input '<EOF>'",
		},
		{
			name:  "empty where",
			doc:   header + "features:\n" + validFeature + "    where: \" \" # want\n",
			field: "features[0].where",
			msg:   "is empty; write a boolean expression",
		},
		{
			name:  "where must be a string",
			doc:   header + "features:\n" + validFeature + "    where: [amount] # want\n",
			field: "features[0].where",
			msg:   "expected a string",
		},
		{
			name: "no features",
			doc: header + `features: [] # want
`,
			field: "features",
			msg:   "no features defined",
		},
		{
			name:  "features omitted",
			doc:   "entities: # want\n" + strings.TrimPrefix(header, "entities:\n"),
			line:  1,
			field: "features",
			msg:   "no features defined",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantLine := tt.line
			if wantLine == 0 {
				wantLine = markedLine(t, tt.doc)
			}
			f, err := Parse("features.yaml", []byte(tt.doc), schemaFS(t), ".")
			if f != nil {
				t.Errorf("Parse returned a *File alongside error %v", err)
			}
			var e *Error
			if !errors.As(err, &e) || errors.As(err, new(Errors)) {
				t.Fatalf("got %v; want exactly one problem (a *Error)\n--- file ---\n%s", err, tt.doc)
			}
			if e.File != "features.yaml" || e.Line != wantLine || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got  %v\nwant features.yaml:%d: %s: ...%s...", e, wantLine, tt.field, tt.msg)
			}
			if strings.Contains(e.Msg, "aggregations:") {
				t.Errorf("message %q carries the aggregations package prefix", e.Msg)
			}
		})
	}
}

func TestEveryProblemIsReportedSortedByLine(t *testing.T) {
	doc := `entities:
  - name: User
    key: user_id
sources:
  - name: transactions
    topic: transactions
    schema: transaction.avsc
    event_time: ts
features:
  - name: txn
    version: 1
    entity: user
    source: transactions
    aggregation: avgg
    window: 7d
    owner: payments
    description: d
    colour: red
`
	_, err := Parse("features.yaml", []byte(doc), schemaFS(t), ".")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v, want Errors", err)
	}
	// The unknown key is found while reading the YAML, before the name and
	// references are checked; the report is still in line order.
	want := []struct {
		line  int
		field string
	}{
		{2, "entities[0].name"},
		{12, "features[0].entity"},
		{14, "features[0].aggregation"},
		{18, "features[0].colour"},
	}
	if len(es) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(es), len(want), err)
	}
	lines := strings.Split(err.Error(), "\n")
	for i, w := range want {
		if es[i].Line != w.line || es[i].Field != w.field {
			t.Errorf("problem %d = %v, want line %d field %s", i, es[i], w.line, w.field)
		}
		if lines[i] != es[i].Error() {
			t.Errorf("line %d of the message = %q, want %q", i, lines[i], es[i].Error())
		}
	}
	var first *Error
	if !errors.As(err, &first) || first != es[0] {
		t.Errorf("errors.As(*Error) = %v, want the first problem", first)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"file, line, field and message", &Error{"features.yaml", 23, "features[1].aggregation", "bad"}, "features.yaml:23: features[1].aggregation: bad"},
		{"a problem of the whole file has no field", &Error{"f.yaml", 3, "", "invalid YAML: x"}, "f.yaml:3: invalid YAML: x"},
		{"an unknown line is left out", &Error{"f.yaml", 0, "", "invalid YAML: x"}, "f.yaml: invalid YAML: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidOptionalSettings(t *testing.T) {
	doc := `kafka:
  feature_log_topic: fp.features
  dead_letter_topic: fp.dlq
  lookup_log_topic: fp.lookups
  group: fp-workers
  partitions: 12
  replication_factor: 3
` + header + `features:
  - name: amount_avg
    version: 1
    entity: user
    source: transactions
    aggregation: avg
    field: amount
    window: 2h
    hop: 30m
    owner: payments
    description: d
    tags: [payments, fraud]
    deprecated: true
    default: -1.5
  - name: currency_count
    version: 1
    entity: user
    source: transactions
    aggregation: count
    field: currency
    window: lifetime
    owner: payments
    description: count may name a field of any type
`
	f := mustParse(t, doc)
	lineOf := func(s string) int {
		t.Helper()
		for i, line := range strings.Split(doc, "\n") {
			if strings.Contains(line, s) {
				return i + 1
			}
		}
		t.Fatalf("no %q in the file", s)
		return 0
	}
	want := Kafka{FeatureLogTopic: "fp.features", DeadLetterTopic: "fp.dlq", LookupLogTopic: "fp.lookups", RegistryTopic: DefaultRegistryTopic, Group: "fp-workers", Partitions: 12, ReplicationFactor: 3, RepartitionPrefix: DefaultRepartitionPrefix}
	if f.Kafka != want {
		t.Errorf("Kafka = %+v, want %+v", f.Kafka, want)
	}
	avg := f.Features[0]
	if avg.Window != (aggregations.Window{Size: 2 * aggregations.Hour, Hop: 30 * aggregations.Minute}) {
		t.Errorf("window = %+v, want 2h hopping by 30m", avg.Window)
	}
	if avg.Default == nil || *avg.Default != -1.5 || !avg.Deprecated || !slices.Equal(avg.Tags, []string{"payments", "fraud"}) {
		t.Errorf("amount_avg = default %v deprecated %v tags %v", avg.Default, avg.Deprecated, avg.Tags)
	}
	if want := lineOf("name: amount_avg"); avg.Line != want {
		t.Errorf("amount_avg Line = %d, want %d", avg.Line, want)
	}
	if s, _ := f.Source("transactions"); s.Entity == nil || s.Entity.Name != "user" || len(s.Features) != 2 {
		t.Errorf("transactions: entity %v, %d features; want user, 2", s.Entity, len(s.Features))
	}
	if s, _ := f.Source("logins"); s.Entity != nil || len(s.Features) != 0 {
		t.Errorf("logins feeds no feature but has entity %v and features %v", s.Entity, ids(s.Features))
	}
	if e, ok := f.Entity("merchant"); !ok || e.Key != "merchant_id" || e.Line != lineOf("name: merchant") {
		t.Errorf("Entity(merchant) = %+v, %v", e, ok)
	}
	if _, ok := f.Entity("nobody"); ok {
		t.Error("Entity(nobody) found")
	}
}

// timedSchema is the transaction schema with a second long field, so that a
// test can change a source's event_time and nothing else.
const timedSchema = `{"type": "record", "name": "Timed", "namespace": "featurepipe.test", "fields": [
  {"name": "user_id", "type": "string"},
  {"name": "merchant_id", "type": "string"},
  {"name": "amount", "type": "double"},
  {"name": "ts", "type": "long"},
  {"name": "received_ts", "type": "long"}
]}`

func TestHashCoversTheDefinitionOnly(t *testing.T) {
	fsys := schemaFS(t)
	fsys["timed.avsc"] = &fstest.MapFile{Data: []byte(timedSchema)}
	baseHeader := strings.Replace(header, "schema: transaction.avsc", "schema: timed.avsc", 1)
	base := strings.Replace(validFeature, "window: 7d\n", "window: 7d\n    hop: 1d\n", 1) + "    tags: [payments]\n"
	// edited applies old, new pairs to s, each once; a missing old string is
	// a broken test, not an unchanged hash.
	edited := func(t *testing.T, s string, oldnew []string) string {
		t.Helper()
		for i := 0; i+1 < len(oldnew); i += 2 {
			if !strings.Contains(s, oldnew[i]) {
				t.Fatalf("no %q in:\n%s", oldnew[i], s)
			}
			s = strings.Replace(s, oldnew[i], oldnew[i+1], 1)
		}
		return s
	}
	hashOf := func(t *testing.T, headerEdits, featureEdits []string) (string, *Feature) {
		t.Helper()
		doc := edited(t, baseHeader, headerEdits) + "features:\n" + edited(t, base, featureEdits)
		f, err := Parse("features.yaml", []byte(doc), fsys, ".")
		if err != nil {
			t.Fatalf("Parse: %v\n--- file ---\n%s", err, doc)
		}
		return f.Features[0].Hash, f.Features[0]
	}
	baseHash, _ := hashOf(t, nil, nil)
	tests := []struct {
		name            string
		header, feature []string // old, new pairs
		changes         bool
	}{
		// Every entry of Definition, changed alone.
		{"entity", []string{"sources:\n", "  - name: customer\n    key: user_id\nsources:\n"}, []string{"entity: user", "entity: customer"}, true},
		{"entity key field", []string{"key: user_id", "key: merchant_id"}, nil, true},
		{"keys: [one field] is key: one field", []string{"key: user_id", "keys: [user_id]"}, nil, false},
		{"composite key fields", []string{"key: user_id", "keys: [user_id, merchant_id]"}, nil, true},
		{"composite key field order", []string{"key: user_id", "keys: [merchant_id, user_id]"}, nil, true},
		{"source", []string{"name: transactions", "name: payments"}, []string{"source: transactions", "source: payments"}, true},
		{"topic", []string{"topic: transactions", "topic: payments"}, nil, true},
		{"event_time", []string{"event_time: ts", "event_time: received_ts"}, nil, true},
		{"aggregation", nil, []string{"aggregation: avg", "aggregation: max"}, true},
		{"field", nil, []string{"field: amount", "field: ts"}, true},
		{"window size", nil, []string{"window: 7d", "window: 14d"}, true},
		{"hop", nil, []string{"hop: 1d", "hop: 1h"}, true},
		{"default", nil, []string{"tags: [payments]", "tags: [payments]\n    default: 0"}, true},
		{"where", nil, []string{"tags: [payments]", "tags: [payments]\n    where: amount > 1.0"}, true},
		{"percentile", nil, []string{"aggregation: avg", "aggregation: approx_percentile\n    percentile: 0.95"}, true},
		// Metadata, and what the hash leaves out on purpose.
		{"description", nil, []string{"description: Average amount.", "description: Mean amount spent."}, false},
		{"owner", nil, []string{"owner: payments", "owner: risk"}, false},
		{"tags", nil, []string{"tags: [payments]", "tags: [payments, fraud]"}, false},
		{"deprecated", nil, []string{"tags: [payments]", "tags: [payments]\n    deprecated: true"}, false},
		{"version", nil, []string{"version: 1", "version: 2"}, false},
		{"name", nil, []string{"name: base", "name: other"}, false},
		{"the schema file, same fields", []string{"schema: timed.avsc", "schema: ./timed.avsc"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := hashOf(t, tt.header, tt.feature)
			if changed := got != baseHash; changed != tt.changes {
				t.Errorf("changing %s: hash changed = %v, want %v", tt.name, changed, tt.changes)
			}
		})
	}
	t.Run("default -0 and 0 hash the same", func(t *testing.T) {
		zero, _ := hashOf(t, nil, []string{"tags: [payments]", "tags: [payments]\n    default: 0"})
		negZero, f := hashOf(t, nil, []string{"tags: [payments]", "tags: [payments]\n    default: -0.0"})
		if f.Default == nil || !math.Signbit(*f.Default) {
			t.Fatalf("default: -0.0 did not parse as -0, so this case tests nothing (Default %v)", f.Default)
		}
		if negZero != zero {
			t.Errorf("default -0 hashes to %s, default 0 to %s; want the same", negZero, zero)
		}
		one, _ := hashOf(t, nil, []string{"tags: [payments]", "tags: [payments]\n    default: 1"})
		if one == zero {
			t.Error("default 1 and default 0 hash the same")
		}
	})
}

// TestWhereHash: a where is part of the definition (two wheres hash
// differently, surrounding space does not count), and a feature without one
// has no where entry, so the hashes stored before where existed still match.
func TestWhereHash(t *testing.T) {
	hash := func(where string) *Feature {
		t.Helper()
		doc := header + "features:\n" + validFeature
		if where != "" {
			doc += "    where: " + where + "\n"
		}
		return mustParse(t, doc).Features[0]
	}
	none, a, b, aSpaced := hash(""), hash(`"amount > 1.0"`), hash(`"amount > 2.0"`), hash(`"  amount > 1.0 "`)
	if a.Hash == b.Hash || a.Hash == none.Hash {
		t.Errorf("hashes: none %s, amount > 1.0 %s, amount > 2.0 %s; want all distinct", none.Hash, a.Hash, b.Hash)
	}
	if aSpaced.Hash != a.Hash || aSpaced.Where != "amount > 1.0" {
		t.Errorf("surrounding space changed the definition: %q %s vs %s", aSpaced.Where, aSpaced.Hash, a.Hash)
	}
	for _, kv := range none.Definition() {
		if kv[0] == "where" {
			t.Errorf("a feature without where has a where entry %q in its definition", kv[1])
		}
	}
	if none.Filter != nil || a.Filter == nil || a.Filter.Expr != "amount > 1.0" {
		t.Errorf("Filter: without where %v, with where %+v", none.Filter, a.Filter)
	}
}

// TestWhereFieldTypes: the CEL type of every usable Avro type, and CEL's null
// semantics for nullable fields.
func TestWhereFieldTypes(t *testing.T) {
	fsys := schemaFS(t)
	fsys["wide.avsc"] = &fstest.MapFile{Data: []byte(`{"type": "record", "name": "Wide", "namespace": "featurepipe.test", "fields": [
  {"name": "user_id", "type": "string"},
  {"name": "d", "type": "double"}, {"name": "f", "type": "float"},
  {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
  {"name": "b", "type": "boolean"},
  {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "maybe", "type": ["null", "double"]}
]}`)}
	doc := func(where string) string {
		return strings.Replace(header, "schema: transaction.avsc", "schema: wide.avsc", 1) + "features:\n" +
			strings.Replace(validFeature, "field: amount", "field: d", 1) + "    where: '" + where + "' # want\n"
	}
	ok := `d > 1.0 && f < 2.0 && i == 3 && l != 4 && b && e == "A" && ts > 0`
	if _, err := Parse("features.yaml", []byte(doc(ok)), fsys, "."); err != nil {
		t.Fatalf("where %s: %v", ok, err)
	}
	// A nullable field is CEL's nullable double: it compares with null, and
	// is type-checked like a double.
	f, err := Parse("features.yaml", []byte(doc("maybe != null && maybe > 1.0")), fsys, ".")
	if err != nil {
		t.Fatalf("where on a nullable field: %v", err)
	}
	_, err = Parse("features.yaml", []byte(doc(`maybe > "x"`)), fsys, ".")
	var e *Error
	if !errors.As(err, &e) || e.Field != "features[0].where" || !strings.Contains(e.Msg, "no matching overload") {
		t.Errorf("where comparing a nullable double with a string: got %v", err)
	}
	guarded := f.Features[0].Filter
	unguarded := mustParseFS(t, fsys, doc("maybe > 1.0")).Features[0].Filter
	rec := func(maybe any) map[string]any { return map[string]any{"user_id": "u1", "d": 1.0, "maybe": maybe} }
	var in FilterInput
	for _, tt := range []struct {
		f       *Filter
		maybe   any // as goavro decodes a ["null", "double"] union
		want    bool
		wantErr bool
	}{
		{guarded, nil, false, false},
		{guarded, map[string]any{"double": 2.0}, true, false},
		{guarded, map[string]any{"double": 0.5}, false, false},
		{unguarded, map[string]any{"double": 2.0}, true, false},
		{unguarded, nil, false, true}, // null reaches >: the record is dead-lettered (filter_error)
	} {
		in.Rec = rec(tt.maybe)
		got, err := tt.f.Match(&in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("where %s with maybe=%v: got %v, %v; want %v, error %v", tt.f.Expr, tt.maybe, got, err, tt.want, tt.wantErr)
		}
	}
}

func mustParseFS(t *testing.T, fsys fs.FS, doc string) *File {
	t.Helper()
	f, err := Parse("features.yaml", []byte(doc), fsys, ".")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

func TestFeatureReference(t *testing.T) {
	version := func(n, extra string) string {
		return `  - name: txn_count
    version: ` + n + `
    entity: user
    source: transactions
    aggregation: count
    window: ` + n + `d
    owner: payments
    description: d
` + extra
	}
	f := mustParse(t, header+"features:\n"+
		version("1", "")+version("3", "    deprecated: true\n")+version("2", "")+
		`  - name: old_only
    version: 1
    entity: user
    source: transactions
    aggregation: count
    window: 1d
    owner: payments
    description: d
    deprecated: true
  - name: old_only
    version: 2
    entity: user
    source: transactions
    aggregation: count
    window: 2d
    owner: payments
    description: d
    deprecated: true
`)
	tests := []struct {
		name   string
		ref    string
		wantID string // "" when the reference is unknown
		msg    string // part of the error message when unknown
	}{
		{"name picks the newest version that is not deprecated", "txn_count", "txn_count@2", ""},
		{"name picks the newest version when all are deprecated", "old_only", "old_only@2", ""},
		{"name@N picks exactly N", "txn_count@1", "txn_count@1", ""},
		{"name@N picks a deprecated version too", "txn_count@3", "txn_count@3", ""},
		{"unknown version lists the versions", "txn_count@4", "", "txn_count has versions 1, 2, 3"},
		{"unknown name suggests close names", "txn_cnt", "", `did you mean "txn_count"?`},
		{"unrelated name lists the features", "zzz", "", "defined features: old_only, txn_count"},
		{"version must be a number", "txn_count@latest", "", "version after @ must be a positive integer"},
		{"version 0 does not exist", "txn_count@0", "", "positive integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft, err := f.Feature(tt.ref)
			if tt.wantID != "" {
				if err != nil || ft.ID != tt.wantID {
					t.Fatalf("Feature(%q) = %v, %v; want %s", tt.ref, ft, err, tt.wantID)
				}
				return
			}
			if !errors.Is(err, ErrUnknownFeature) || ft != nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Feature(%q) = %v, %v; want ErrUnknownFeature with %q", tt.ref, ft, err, tt.msg)
			}
		})
	}
	if got := f.EntityFeatures("user"); !slices.Equal(ids(got), []string{"txn_count@1", "txn_count@3", "txn_count@2", "old_only@1", "old_only@2"}) {
		t.Errorf("EntityFeatures(user) = %v, want every version in file order", ids(got))
	}
}

// A deprecated version names its replacement and sunset; the replacement
// is stored pinned, the sunset as a UTC date, and neither changes the hash.
func TestDeprecationFields(t *testing.T) {
	doc := header + "features:\n" + validFeature + "    deprecated: true\n    replaced_by: base@2\n    sunset: 2027-01-31\n" +
		strings.Replace(validFeature, "version: 1", "version: 2", 1) + "    tags: [x]\n"
	f, err := Parse("features.yaml", []byte(doc), schemaFS(t), ".")
	if err != nil {
		t.Fatal(err)
	}
	old, err := f.Feature("base@1")
	if err != nil {
		t.Fatal(err)
	}
	if old.ReplacedBy != "base@2" || !old.Sunset.Equal(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("base@1: replaced by %q, sunset %v", old.ReplacedBy, old.Sunset)
	}
	plain, err := Parse("features.yaml", []byte(header+"features:\n"+validFeature), schemaFS(t), ".")
	if err != nil {
		t.Fatal(err)
	}
	if plain.Features[0].Hash != old.Hash {
		t.Fatal("deprecation metadata changed the definition hash")
	}
	if bare, _ := f.Feature("base"); bare.ID != "base@2" {
		t.Fatalf("a bare name resolves to %s, want the replacement base@2", bare.ID)
	}
}

// TestNewAggregations: every aggregation name loads with a numeric field; the
// window of the approximate ones carries their sketch (and percentile), the
// exact ones' does not; percentile enters the definition (so two percentiles
// hash differently) only when set, so the hashes of other features are as
// before.
func TestNewAggregations(t *testing.T) {
	for _, k := range aggregations.Kinds() {
		if k == aggregations.Count {
			continue
		}
		doc := header + "features:\n" + strings.Replace(validFeature, "aggregation: avg", "aggregation: "+k.String(), 1)
		if k.NeedsPercentile() {
			doc += "    percentile: 0.95\n"
		}
		if k.NeedsK() {
			doc += "    k: 7\n"
		}
		f := mustParse(t, doc).Features[0]
		if f.Aggregation != k {
			t.Errorf("%s: parsed as %v", k, f.Aggregation)
		}
		plain := aggregations.Window{Size: f.Window.Size, Hop: f.Window.Hop}
		if wantSketch := k.Approximate() || k.List(); (f.Window != plain) != wantSketch {
			t.Errorf("%s: window %+v; want a sketch: %v", k, f.Window, wantSketch)
		}
		if f.Window != plain.For(k, f.Percentile).WithK(f.K) {
			t.Errorf("%s: window %+v, want %+v", k, f.Window, plain.For(k, f.Percentile).WithK(f.K))
		}
		hasP, hasK := false, false
		for _, kv := range f.Definition() {
			hasP = hasP || kv[0] == "percentile"
			hasK = hasK || (kv[0] == "k" && kv[1] == "7")
		}
		if hasK != k.NeedsK() || (k.NeedsK() && (f.K != 7 || f.Window.K() != 7)) {
			t.Errorf("%s: k %d (window %d), in the definition: %v", k, f.K, f.Window.K(), hasK)
		}
		if hasP != k.NeedsPercentile() || (k.NeedsPercentile() && (f.Percentile != 0.95 || f.Window.Percentile() != 0.95)) {
			t.Errorf("%s: percentile %v (window %v), in the definition: %v", k, f.Percentile, f.Window.Percentile(), hasP)
		}
	}
	p := func(v string) string {
		doc := header + "features:\n" + strings.Replace(validFeature, "aggregation: avg", "aggregation: approx_percentile", 1) + "    percentile: " + v + "\n"
		return mustParse(t, doc).Features[0].Hash
	}
	if p("0.95") == p("0.99") || p("0.95") != p("0.950") {
		t.Errorf("percentile hashes: 0.95 %s, 0.99 %s, 0.950 %s", p("0.95"), p("0.99"), p("0.950"))
	}
	kh := func(v string) string {
		doc := header + "features:\n" + strings.Replace(validFeature, "aggregation: avg", "aggregation: last_k", 1) + "    k: " + v + "\n"
		return mustParse(t, doc).Features[0].Hash
	}
	if kh("5") == kh("6") {
		t.Error("k 5 and 6 hash the same")
	}
}
