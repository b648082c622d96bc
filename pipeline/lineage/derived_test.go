package lineage

import (
	"slices"
	"strings"
	"testing"
)

// derivedFeatures adds ratio@1 = amount / count (amount resolving to
// amount@2, the newest) and a service reading it.
const derivedFeatures = baseFeatures + `  - {name: ratio, version: 1, entity: user, expression: "amount / count", owner: risk-team, description: d}
`

// TestDerivedLineage: a derived feature hangs below the versions it reads
// (from the file, and from its registered definition alone), and plan
// lists it among the dependents of an input that changes.
func TestDerivedLineage(t *testing.T) {
	services := baseServices + "  - {name: risk, owner: risk-team, description: d, features: [ratio]}\n"
	cfg := file(t, derivedFeatures, services)
	v := catalog(t, cfg)
	for _, g := range []*Graph{Build(cfg, v, Consumers{"ratio@1": {"risk-api": 2}}), Build(nil, v, Consumers{"ratio@1": {"risk-api": 2}})} {
		sub, err := g.Walk("feature:ratio@1", Upstream)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ids(sub.Nodes), []string{"feature:ratio@1", "topic:tx", "source:transactions", "feature:amount@2", "feature:count@1"}; !slices.Equal(got, want) {
			t.Errorf("upstream of ratio@1 = %v, want %v", got, want)
		}
		if !slices.Contains(sub.Edges, Edge{From: "feature:amount@2", To: "feature:ratio@1"}) {
			t.Errorf("no edge amount@2 -> ratio@1 in %v", sub.Edges)
		}
		if got := ids(g.Dependents("feature:amount@2")); !slices.Contains(got, "feature:ratio@1") || !slices.Contains(got, "consumer:risk-api") {
			t.Errorf("dependents of amount@2 = %v; want the derived ratio@1 and its consumer", got)
		}
		if got := ids(g.Dependents("feature:amount@1")); slices.Contains(got, "feature:ratio@1") {
			t.Errorf("dependents of amount@1 = %v; ratio reads amount@2", got)
		}
	}
	g := Build(cfg, v, nil)
	sub, _ := g.Walk("feature:count@1", Downstream)
	if txt := sub.Text(); !strings.Contains(txt, "feature:ratio@1 (owner risk-team)") || !strings.Contains(txt, "service:risk") {
		t.Errorf("lineage text of count@1 lacks the derived feature and its service:\n%s", txt)
	}
	// plan: redefining count@1 in place names ratio@1 (and what reads it)
	// among its dependents.
	next := file(t, strings.Replace(derivedFeatures, "window: 7d", "window: 14d", 1), services)
	p := Diff(next, v, cfg, nil)
	var found bool
	for _, c := range p.Changes {
		if c.Object == "feature:count@1" {
			found = true
			if got := ids(c.Dependents); !slices.Contains(got, "feature:ratio@1") || !slices.Contains(got, "service:risk") {
				t.Errorf("plan dependents of count@1 = %v; want ratio@1 and service:risk", got)
			}
		}
	}
	if !found {
		t.Errorf("plan has no change of count@1: %+v", p.Changes)
	}
}
