package config

import (
	"strings"
	"testing"
	"time"
)

// TestMonitorThresholds: built-in defaults, overridden by the file's monitor
// block, overridden key by key by a feature's; the hash ignores them.
func TestMonitorThresholds(t *testing.T) {
	features := `features:
  - {name: a, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: o, description: d}
  - {name: b, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: o, description: d,
     monitor: {psi: 0.5, freshness: 2h}}
`
	plain := mustParse(t, header+features)
	if a, _ := plain.Feature("a"); a.Monitor != DefaultMonitor || plain.Monitor != DefaultMonitor {
		t.Fatalf("no monitor block: file %v, a %v, want %v", plain.Monitor, a.Monitor, DefaultMonitor)
	}
	f := mustParse(t, header+"monitor: {null_rate: 0.1, freshness: 10m}\n"+features)
	a, _ := f.Feature("a")
	b, _ := f.Feature("b")
	if want := (Monitor{PSI: 0.2, NullRate: 0.1, Freshness: 10 * time.Minute}); f.Monitor != want || a.Monitor != want {
		t.Fatalf("file %v, a %v, want the file's block over the defaults %v", f.Monitor, a.Monitor, want)
	}
	if want := (Monitor{PSI: 0.5, NullRate: 0.1, Freshness: 2 * time.Hour}); b.Monitor != want {
		t.Fatalf("b %v, want its block over the file's %v", b.Monitor, want)
	}
	pb, _ := plain.Feature("b")
	if pb.Hash != b.Hash {
		t.Fatal("the monitor block changed the definition hash")
	}
}

func TestMonitorThresholdErrors(t *testing.T) {
	feature := `features:
  - {name: a, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: o, description: d}
`
	for doc, want := range map[string]string{
		"monitor: {psi: 0}\n":         "monitor.psi: must be above 0",
		"monitor: {null_rate: 1.5}\n": "monitor.null_rate: must be a fraction in [0, 1]",
		"monitor: {freshness: 5d}\n":  `monitor.freshness: expected a positive duration such as 90s, 5m or 2h; got "5d"`,
		"monitor: {freshnes: 5m}\n":   "freshnes",
		"monitor: {psi: high}\n":      "monitor.psi: expected a finite number",
	} {
		_, err := Parse("features.yaml", []byte(header+doc+feature), schemaFS(t), ".")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to mention %q", doc, err, want)
		}
	}
}
