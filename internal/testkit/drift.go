package testkit

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// DriftLevels returns, per feature version ("name@version"), the baseline
// label of its featurepipe_feature_drift_psi series and whether the PSI
// says drifted (above 1) or stable: "train@2 drifted".
func DriftLevels(t testing.TB, g prometheus.Gatherer) map[string]string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, mf := range mfs {
		if mf.GetName() != "featurepipe_feature_drift_psi" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			level := "stable"
			if m.GetGauge().GetValue() > 1 {
				level = "drifted"
			}
			out[l["feature"]+"@"+l["version"]] = l["baseline"] + " " + level
		}
	}
	return out
}
