package config

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

// derivedBase declares, after header + "features:\n", the inputs the derived
// tests read: sum_1h (sum), avg_30d@1 and @2 (avg) and cnt_7d (count), all
// of entity user.
const derivedBase = `  - name: sum_1h
    version: 1
    entity: user
    source: transactions
    aggregation: sum
    field: amount
    window: 1h
    owner: t
    description: d
  - name: avg_30d
    version: 1
    entity: user
    source: transactions
    aggregation: avg
    field: amount
    window: 30d
    owner: t
    description: d
  - name: avg_30d
    version: 2
    entity: user
    source: transactions
    aggregation: avg
    field: amount
    window: 30d
    hop: 1h
    owner: t
    description: d
  - name: cnt_7d
    version: 1
    entity: user
    source: transactions
    aggregation: count
    window: 7d
    owner: t
    description: d
`

// derivedFeature is a derived feature named ratio reading expr; extra lines
// (indented by 4) follow.
func derivedFeature(expr string, extra ...string) string {
	s := "  - name: ratio\n    version: 1\n    entity: user\n    expression: \"" + expr + "\"\n    owner: t\n    description: d\n"
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

func TestDerivedLoads(t *testing.T) {
	f := mustParse(t, header+"features:\n"+derivedBase+derivedFeature("sum_1h / avg_30d")+
		"  - name: ratio_pinned\n    version: 1\n    entity: user\n    expression: sum_1h / avg_30d\n    inputs: [avg_30d@1]\n    owner: t\n    description: d\n"+
		"  - name: scaled\n    version: 1\n    entity: user\n    expression: ratio * 2.0 + double(cnt_7d)\n    owner: t\n    description: d\n")
	ratio, _ := f.Feature("ratio")
	pinned, _ := f.Feature("ratio_pinned")
	scaled, _ := f.Feature("scaled")
	if !ratio.IsDerived() || ratio.SourceRef != nil || ratio.Source != "" || ratio.EntityRef == nil || ratio.EntityRef.Name != "user" {
		t.Fatalf("ratio = %+v; want a derived feature of user without a source", ratio)
	}
	// A bare name reads the version a bare name resolves to (the newest not
	// deprecated); inputs pins another.
	if got := ids(ratio.Derived.Inputs); strings.Join(got, ",") != "avg_30d@2,sum_1h@1" {
		t.Errorf("ratio inputs = %v, want avg_30d@2, sum_1h@1 (sorted by name)", got)
	}
	if got := ids(pinned.Derived.Inputs); strings.Join(got, ",") != "avg_30d@1,sum_1h@1" {
		t.Errorf("ratio_pinned inputs = %v, want avg_30d@1, sum_1h@1", got)
	}
	if got := ids(scaled.Derived.Inputs); strings.Join(got, ",") != "cnt_7d@1,ratio@1" {
		t.Errorf("scaled inputs = %v, want cnt_7d@1, ratio@1", got)
	}
	// The input versions are part of the definition.
	if ratio.Hash == pinned.Hash {
		t.Error("reading avg_30d@2 and avg_30d@1 hash the same")
	}
	def := map[string]string{}
	for _, kv := range ratio.Definition() {
		def[kv[0]] = kv[1]
	}
	if def["inputs"] != "avg_30d@2,sum_1h@1" || def["expression"] != "sum_1h / avg_30d" || def["entity"] != "user" {
		t.Errorf("Definition = %v", ratio.Definition())
	}
	for _, s := range f.Sources {
		for _, ft := range s.Features {
			if ft.IsDerived() {
				t.Errorf("derived %s is listed among the features of source %s", ft.ID, s.Name)
			}
		}
	}
	// The same expression over the same versions hashes the same, whatever
	// the spelling of the pin; adding a newer version of an input changes it.
	g := mustParse(t, header+"features:\n"+derivedBase+derivedFeature("sum_1h / avg_30d", "inputs: [avg_30d@2]"))
	gr, _ := g.Feature("ratio")
	if gr.Hash != ratio.Hash {
		t.Errorf("pinning the version the bare name reads changed the hash")
	}
	h := mustParse(t, header+"features:\n"+strings.Replace(derivedBase, "    version: 2\n", "    version: 3\n", 1)+derivedFeature("sum_1h / avg_30d"))
	hr, _ := h.Feature("ratio")
	if hr.Hash == ratio.Hash || ids(hr.Derived.Inputs)[0] != "avg_30d@3" {
		t.Errorf("a newer input version did not change the derived definition: inputs %v", ids(hr.Derived.Inputs))
	}
}

// TestDerivedEval: null propagation, division by zero, result types, and an
// expression that handles null.
func TestDerivedEval(t *testing.T) {
	null := math.NaN() // marks a null input below
	tests := []struct {
		expr   string
		sum    float64 // sum_1h
		avg    float64 // avg_30d
		want   float64
		wantOK bool
	}{
		{"sum_1h / avg_30d", 30, 10, 3, true},
		{"sum_1h / avg_30d", null, 10, 0, false},              // a null input propagates
		{"sum_1h / avg_30d", 30, null, 0, false},              // either side
		{"sum_1h / avg_30d", 30, 0, 0, false},                 // ÷0: +Inf is null
		{"sum_1h / avg_30d", 0, 0, 0, false},                  // 0/0: NaN is null
		{"-sum_1h / avg_30d", 30, 0, 0, false},                // -Inf too
		{"avg_30d == null ? 0.0 : avg_30d", 1, null, 0, true}, // handled null
		{"avg_30d == null ? 0.0 : avg_30d", 1, 7, 7, true},
		{"avg_30d != null && avg_30d > 5.0 ? 1 : 0", 1, null, 0, true}, // && absorbs the null, int result
		{"avg_30d != null && avg_30d > 5.0 ? 1 : 0", 1, 7, 1, true},
		{"sum_1h > 10 ? sum_1h : avg_30d", 20, null, 20, true}, // a null input not read does not matter
		{"sum_1h > 10 ? sum_1h : avg_30d", 5, null, 0, false},  // read: null result
		{"int(sum_1h) + 1", 1e300, 1, 0, false},                // overflow: failed evaluation is null
		{"uint(sum_1h)", 4, 1, 4, true},
		{"sum_1h", null, 1, 0, false}, // a null input as the result
	}
	for _, tt := range tests {
		f := mustParse(t, header+"features:\n"+derivedBase+derivedFeature(tt.expr))
		d := f.Features[len(f.Features)-1].Derived
		var in DerivedInput
		in.Reset(d)
		for i, ft := range d.Inputs {
			v := map[string]float64{"sum_1h": tt.sum, "avg_30d": tt.avg}[ft.Name]
			in.Set(i, v, !math.IsNaN(v))
		}
		got, ok := d.Eval(&in)
		if ok != tt.wantOK || ok && got != tt.want {
			t.Errorf("%s with sum_1h=%v avg_30d=%v: got %v, %v; want %v, %v", tt.expr, tt.sum, tt.avg, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestInvalidDerived checks each derived-feature and ttl rule on a file that
// breaks only that rule: exactly one problem, on the expected line and field.
func TestInvalidDerived(t *testing.T) {
	base := header + "features:\n" + derivedBase
	baseLines := strings.Count(base, "\n")
	exprLine := baseLines + 4 // derivedFeature's expression line
	tests := []struct {
		name  string
		doc   string
		line  int
		field string
		msg   string
	}{
		{"unknown input", base + derivedFeature("sum_1h / avg_31d"), exprLine, "features[4].expression",
			`column 10: unknown feature "avg_31d"; did you mean "avg_30d"?`},
		{"type error", base + derivedFeature("sum_1h + 'x'"), exprLine, "features[4].expression",
			"found no matching overload for '_+_'"},
		{"boolean result", base + derivedFeature("sum_1h > 1.0"), exprLine, "features[4].expression",
			"is of type bool; a derived feature is a number"},
		{"syntax error", base + derivedFeature("sum_1h /"), exprLine, "features[4].expression", "Syntax error"},
		{"reads no feature", base + derivedFeature("1.0 + 2.0"), exprLine, "features[4].expression", "reads no feature"},
		{"empty", base + derivedFeature(" "), exprLine, "features[4].expression", "is empty"},
		{"reads itself", base + derivedFeature("ratio + 1.0"), exprLine, "features[4].expression", "reads itself"},
		{"cycle", base + derivedFeature("other + 1.0") +
			"  - name: other\n    version: 1\n    entity: user\n    expression: ratio * 2.0\n    owner: t\n    description: d\n",
			exprLine, "features[4].expression", "cycle: ratio@1 -> other@1 -> ratio@1"},
		{"source on a derived feature", base + derivedFeature("sum_1h / avg_30d", "source: transactions"), exprLine + 3,
			"features[4].source", "a derived feature (expression) has no source of its own"},
		{"window on a derived feature", base + derivedFeature("sum_1h / avg_30d", "window: 7d"), exprLine + 3,
			"features[4].window", "has no window of its own"},
		{"aggregation on a derived feature", base + derivedFeature("sum_1h / avg_30d", "aggregation: count"), exprLine + 3,
			"features[4].aggregation", "has no aggregation of its own"},
		{"k on a derived feature", base + derivedFeature("sum_1h / avg_30d", "k: 3"), exprLine + 3,
			"features[4].k", "has no k of its own"},
		{"a list input", base + derivedFeature("recent * 2.0") +
			"  - {name: recent, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, window: 7d, owner: t, description: d}\n",
			exprLine, "features[4].expression", "recent is a list (last_k): a derived feature reads numbers only"},
		{"a string input", base + derivedFeature("merchant * 2.0") +
			"  - {name: merchant, version: 1, entity: user, source: transactions, aggregation: last, field: merchant_id, window: 7d, owner: t, description: d}\n",
			exprLine, "features[4].expression", "merchant is a string (last of string field merchant_id): a derived feature reads numbers only"},
		{"ttl on a derived feature", base + derivedFeature("sum_1h / avg_30d", "ttl: 1d"), exprLine + 3,
			"features[4].ttl", "put the ttl on the features its expression reads"},
		{"pin not read", base + derivedFeature("sum_1h * 2.0", "inputs: [avg_30d@1]"), exprLine + 3,
			"features[4].inputs", "avg_30d@1 is pinned but the expression does not read avg_30d"},
		{"pin without version", base + derivedFeature("sum_1h / avg_30d", "inputs: [avg_30d]"), exprLine + 3,
			"features[4].inputs[0]", "pin an input as name@version"},
		{"pin of an unknown version", base + derivedFeature("sum_1h / avg_30d", "inputs: [avg_30d@9]"), exprLine + 3,
			"features[4].inputs[0]", "avg_30d has versions 1, 2"},
		{"pinned twice", base + derivedFeature("sum_1h / avg_30d", "inputs: [avg_30d@1, avg_30d@2]"), exprLine + 3,
			"features[4].inputs[1]", "avg_30d is pinned twice"},
		{"inputs without expression", base + strings.Replace(validFeature, "description: Average amount.", "description: Average amount.\n    inputs: [sum_1h@1]", 1),
			baseLines + 10, "features[4].inputs", "applies to a derived feature only"},
		{"ttl longer than the window", base + strings.Replace(validFeature, "window: 7d", "window: 7d\n    ttl: 8d", 1),
			baseLines + 8, "features[4].ttl", "ttl 8d is longer than the window 7d"},
		{"ttl not a duration", base + strings.Replace(validFeature, "window: 7d", "window: 7d\n    ttl: 3 days", 1),
			baseLines + 8, "features[4].ttl", `"3 days"`},
		{"ttl zero", base + strings.Replace(validFeature, "window: 7d", "window: 7d\n    ttl: 0d", 1),
			baseLines + 8, "features[4].ttl", `"0d"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("features.yaml", []byte(tt.doc), schemaFS(t), ".")
			if f != nil {
				t.Fatalf("Parse accepted the file")
			}
			var e *Error
			if !errors.As(err, &e) || errors.As(err, new(Errors)) {
				t.Fatalf("got %v; want exactly one problem\n--- file ---\n%s", err, tt.doc)
			}
			if e.Line != tt.line || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got  %v\nwant features.yaml:%d: %s: ...%s...", e, tt.line, tt.field, tt.msg)
			}
		})
	}
}

// TestDerivedOfAnotherEntity: an expression naming a feature of another
// entity is refused with that reason (a feature of entity merchant needs a
// source keyed by merchant).
func TestDerivedOfAnotherEntity(t *testing.T) {
	doc := strings.Replace(header, "  - name: logins\n    topic: logins\n    schema: login.avsc\n    event_time: ts\n",
		"  - name: payouts\n    topic: payouts\n    schema: transaction.avsc\n    event_time: ts\n", 1) + "features:\n" + derivedBase +
		"  - name: m_cnt\n    version: 1\n    entity: merchant\n    source: payouts\n    aggregation: count\n    window: 7d\n    owner: t\n    description: d\n" +
		derivedFeature("sum_1h / m_cnt")
	_, err := Parse("features.yaml", []byte(doc), schemaFS(t), ".")
	var e *Error
	if !errors.As(err, &e) || e.Field != "features[5].expression" || !strings.Contains(e.Msg, "feature m_cnt belongs to entity merchant, not user") {
		t.Errorf("got %v", err)
	}
}

func TestTTL(t *testing.T) {
	plain := mustParse(t, header+"features:\n"+validFeature).Features[0]
	f := mustParse(t, header+"features:\n"+strings.Replace(validFeature, "window: 7d", "window: 7d\n    ttl: 2d", 1)).Features[0]
	same := mustParse(t, header+"features:\n"+strings.Replace(validFeature, "window: 7d", "window: 7d\n    ttl: 48h", 1)).Features[0]
	if f.TTL != 2*aggregations.Day || plain.TTL != 0 {
		t.Fatalf("TTL = %d, without ttl %d", f.TTL, plain.TTL)
	}
	if f.Hash == plain.Hash || same.Hash != f.Hash {
		t.Errorf("hashes: no ttl %s, 2d %s, 48h %s; want ttl in the hash, by its length", plain.Hash, f.Hash, same.Hash)
	}
	for _, kv := range plain.Definition() {
		if kv[0] == "ttl_ms" {
			t.Error("a feature without ttl has a ttl entry: the hashes stored before ttl existed would change")
		}
	}
	// ttl equal to the window, and any ttl on a lifetime window, are fine.
	mustParse(t, header+"features:\n"+strings.Replace(validFeature, "window: 7d", "window: 7d\n    ttl: 7d", 1))
	life := mustParse(t, header+"features:\n"+strings.Replace(validFeature, "window: 7d", "window: lifetime\n    ttl: 365d", 1)).Features[0]
	// The rule: expired strictly after TTL, only a non-empty window.
	T := int64(1_000 * aggregations.Day)
	ir := aggregations.IR{Count: 1, LastTS: T - 365*aggregations.Day}
	if life.Expired(ir, T) {
		t.Error("an event exactly ttl old expired")
	}
	ir.LastTS--
	if !life.Expired(ir, T) {
		t.Error("an event ttl + 1ms old did not expire")
	}
	if life.Expired(aggregations.IR{}, T) || plain.Expired(ir, T) {
		t.Error("an empty window, or a feature without ttl, expired")
	}
}

// BenchmarkDerivedEval measures one evaluation of a derived feature with a
// reused DerivedInput: what CEL allocates per evaluation.
func BenchmarkDerivedEval(b *testing.B) {
	for _, expr := range []string{"sum_1h / avg_30d", "avg_30d == null ? 0.0 : sum_1h / avg_30d"} {
		b.Run(expr, func(b *testing.B) {
			f := mustParse(b, header+"features:\n"+derivedBase+derivedFeature(expr))
			d := f.Features[len(f.Features)-1].Derived
			var in DerivedInput
			in.Reset(d)
			in.Set(0, 10, true)
			in.Set(1, 30, true)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := d.Eval(&in); !ok {
					b.Fatal("null")
				}
			}
		})
	}
}
