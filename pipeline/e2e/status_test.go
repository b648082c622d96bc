package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// TestStatusContractOnEveryReadPath checks DESIGN.md's statuses through a
// real worker and lookup service, on POST /v1/lookup, GET /v1/features and
// Feast's /get-online-features, for:
//
//	seen     transactions and logins within every window: PRESENT
//	logins   logins only: known, so its transaction features are an
//	         EMPTY_WINDOW (count and sum a real 0) though the view has no
//	         transaction series for it
//	old      one transaction 60 days old, beyond every finite window's
//	         expiry horizon (the worker drops it from those features, so no
//	         tile of theirs exists): known, EMPTY_WINDOW, not NOT_FOUND
//	oldlogin one login 60 days old only: dropped by login_count_1h, so no
//	         feature has any tile of it and only its first-seen marker makes
//	         it known (EMPTY_WINDOW everywhere)
//	nobody   never seen: NOT_FOUND, every value null (count and sum too)
//
// Feast's shape answers a known key's value (the empty window's 0
// included) as PRESENT, a missing value as NULL_VALUE (OUTSIDE_MAX_AGE when
// EXPIRED), and a NOT_FOUND cell as null.
func TestStatusContractOnEveryReadPath(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	p := newProduced()
	now := time.Now()
	ms := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	produceEvents(t, ctx, cl, cfg, []event{
		{source: "transactions", key: "seen", ts: ms(10 * time.Minute), amount: 12.5},
		{source: "transactions", key: "seen", ts: ms(3 * time.Hour), amount: 7},
		{source: "logins", key: "seen", ts: ms(5 * time.Minute)},
		{source: "logins", key: "logins", ts: ms(20 * time.Minute)},
		{source: "transactions", key: "old", ts: ms(60 * 24 * time.Hour), amount: 3},
		{source: "logins", key: "oldlogin", ts: ms(60 * 24 * time.Hour)},
	}, p)
	dir := t.TempDir()
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	keys := []string{"seen", "logins", "old", "nobody", "oldlogin"}
	waitExact(t, ls, cfg, p, keys, 60*time.Second)

	// POST /v1/lookup: the named rules, on top of waitExact's brute force.
	resp, bad := lookupAll(t, ls, cfg, keys, byID)
	if bad != nil {
		t.Fatal(bad)
	}
	for _, rule := range []struct {
		name, key, feature, status string
		value                      *float64
	}{
		{"a known key's empty count window is a real 0", "old", "txn_count_7d@1", lookup.StatusEmptyWindow, ptr(0)},
		{"a known key's empty sum window is a real 0", "old", "txn_sum_1d@1", lookup.StatusEmptyWindow, ptr(0)},
		{"a known key's empty avg window is null", "old", "txn_avg_30d@1", lookup.StatusEmptyWindow, nil},
		{"a source the known key never had counts 0", "logins", "txn_count_7d@1", lookup.StatusEmptyWindow, ptr(0)},
		{"an unknown key's count is null", "nobody", "txn_count_7d@1", lookup.StatusNotFound, nil},
		{"an unknown key's lifetime count is null", "nobody", "txn_count_life@1", lookup.StatusNotFound, nil},
		{"a seen key's count", "seen", "txn_count_7d@1", lookup.StatusPresent, ptr(2)},
		{"a key known by its marker alone counts 0", "oldlogin", "login_count_1h@1", lookup.StatusEmptyWindow, ptr(0)},
		{"a key known by its marker alone has a lifetime count of 0", "oldlogin", "txn_count_life@1", lookup.StatusEmptyWindow, ptr(0)},
	} {
		var got lookup.FeatureValue
		for _, r := range resp.Results {
			if r.Key == rule.key {
				got = r.Features[rule.feature]
			}
		}
		if got.Status != rule.status || (got.Value == nil) != (rule.value == nil) || (got.Value != nil && *got.Value != *rule.value) {
			t.Errorf("%s: %s %s is %s %v", rule.name, rule.key, rule.feature, got.Status, fmtPtr(got.Value))
		}
	}

	// GET /v1/features: every feature of each key, brute force and statuses.
	for _, key := range keys {
		var one lookup.LookupResponse
		r, err := http.Get(ls.url + "/v1/features/user/" + key)
		if err != nil {
			t.Fatal(err)
		}
		decodeInto(t, r, &one)
		if bad, n := compareAnswer(&one, []string{key}, cfg.Features, byName, p); len(bad) > 0 || n != len(cfg.Features) {
			t.Errorf("GET /v1/features/user/%s: %d values compared, differing: %v", key, n, bad)
		}
	}

	// Feast: the same cells in Feast's words, with the field every Feast
	// SDK sends.
	names := make([]string, len(cfg.Features))
	for i, f := range cfg.Features {
		names[i] = f.Name
	}
	var feast lookup.FeastResponse
	if code := postJSON(t, ls.url+"/get-online-features", map[string]any{
		"features": names, "entities": map[string][]string{"user_id": keys},
		"full_feature_names": false, "include_feature_view_version_metadata": false,
	}, &feast); code != http.StatusOK {
		t.Fatalf("POST /get-online-features: HTTP %d", code)
	}
	post, bad := lookupAll(t, ls, cfg, keys, byName)
	if bad != nil {
		t.Fatal(bad)
	}
	for j, f := range cfg.Features {
		col := feast.Results[j+1]
		for i, key := range keys {
			jv := post.Results[i].Features[f.Name]
			wantStatus, want := "PRESENT", any(nil)
			switch {
			case jv.Status == lookup.StatusNotFound:
				wantStatus = "NOT_FOUND"
			case jv.Value == nil && jv.Status == lookup.StatusExpired: // txn_last_fresh of old
				wantStatus = "OUTSIDE_MAX_AGE"
			case jv.Value == nil:
				wantStatus = "NULL_VALUE"
			default:
				want = *jv.Value
			}
			if col.Statuses[i] != wantStatus || col.Values[i] != want {
				t.Errorf("feast %s of %s: %s %v; POST /v1/lookup: %s %v, so want %s %v",
					f.Name, key, col.Statuses[i], col.Values[i], jv.Status, fmtPtr(jv.Value), wantStatus, want)
			}
		}
	}
	if c := feast.Results[1+featureIndex(cfg, "txn_count_7d")]; c.Values[2] != 0.0 || c.Statuses[2] != "PRESENT" || c.Values[3] != nil || c.Statuses[3] != "NOT_FOUND" {
		t.Errorf("feast txn_count_7d of old, nobody: %v %v, want 0 PRESENT, null NOT_FOUND", c.Values[2:], c.Statuses[2:])
	}
}

func ptr(v float64) *float64 { return &v }

func fmtPtr(v *float64) any {
	if v == nil {
		return "null"
	}
	return *v
}

func featureIndex(cfg *config.File, name string) int {
	for i, f := range cfg.Features {
		if f.Name == name {
			return i
		}
	}
	return -1
}
