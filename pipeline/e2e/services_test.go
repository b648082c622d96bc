package e2e

import (
	"context"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
)

// servicesBlock declares, after featureFile's features, a feature service
// with pinned versions and a bare name over both sources.
const servicesBlock = `services:
  - name: fraud_scoring
    owner: fraud-team
    description: Features of the card-fraud model.
    features: [txn_count_7d@1, txn_avg_30d, login_count_1h@1]
    models: [fraud-gbm]
`

// TestLookupThroughFeatureService: once the pipeline has caught up, a lookup
// naming a feature service answers exactly the service's features (keyed
// as the service lists them, at the versions its references resolve to),
// each equal to the brute force over the produced events.
func TestLookupThroughFeatureService(t *testing.T) {
	k, cfg, cl := setup(t, featureFile+servicesBlock)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 5))
	const users = 60
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 2000, users, 40*24*time.Hour, time.Now()), p)
	dir := t.TempDir()
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	keys := append(allKeys(users), "nobody")
	waitExact(t, ls, cfg, p, keys, 90*time.Second)

	svc, err := cfg.Service("fraud_scoring")
	if err != nil {
		t.Fatal(err)
	}
	feats := make([]*config.Feature, len(svc.Features))
	refOf := map[*config.Feature]string{}
	for i, ref := range svc.Features {
		if feats[i], err = cfg.Feature(ref); err != nil {
			t.Fatal(err)
		}
		refOf[feats[i]] = ref
	}
	var resp lookup.LookupResponse
	if code := postJSON(t, ls.url+"/v1/lookup", lookup.LookupRequest{Entity: "user", Keys: keys, FeatureService: "fraud_scoring"}, &resp); code != http.StatusOK {
		t.Fatalf("POST /v1/lookup with feature_service: HTTP %d", code)
	}
	bad, n := compareAnswer(&resp, keys, feats, func(f *config.Feature) string { return refOf[f] }, p)
	if len(bad) > 0 || n != len(keys)*len(feats) {
		t.Fatalf("feature service lookup: %d of %d values compared, differing from brute force: %v", n, len(keys)*len(feats), bad)
	}
	for _, r := range resp.Results {
		if len(r.Features) != len(svc.Features) {
			t.Fatalf("%s: %d features answered, the service has %d", r.Key, len(r.Features), len(svc.Features))
		}
		for i, ref := range svc.Features {
			if v := r.Features[ref]; v.Version != feats[i].Version {
				t.Fatalf("%s %s: version %d served, want %d", r.Key, ref, v.Version, feats[i].Version)
			}
		}
	}
	t.Logf("%d values through feature service %s equal brute force", n, svc.Name)
}
