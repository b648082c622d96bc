package feastrepo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/testkit"
)

func TestCompositeEntityHasAFeastEntityPerJoinKey(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
  - {name: user_merchant, keys: [user_id, merchant_id]}
sources:
  - {name: transactions, topic: transactions, schema: transaction.avsc, event_time: ts, entity: user}
features:
  - {name: txn_count_7d, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, owner: o, description: d}
  - {name: pair_sum_7d, version: 1, entity: user_merchant, source: transactions, aggregation: sum, field: amount, window: 7d, owner: o, description: d}
services:
  - {name: both, owner: o, description: d, features: [pair_sum_7d]}
`, nil)
	dir := t.TempDir()
	if err := Write(dir, cfg, Options{URL: "http://127.0.0.1:8080", Flight: "127.0.0.1:8815"}); err != nil {
		t.Fatal(err)
	}
	defs, err := os.ReadFile(filepath.Join(dir, Definitions))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`entity_user = Entity(name="user", join_keys=["user_id"]`,
		`entity_user_merchant__user_id = Entity(name="user_merchant__user_id", join_keys=["user_id"]`,
		`entity_user_merchant__merchant_id = Entity(name="user_merchant__merchant_id", join_keys=["merchant_id"]`,
		"view_transactions = FeatureView(\n    name=\"transactions\",\n    entities=[entity_user],",
		"view_transactions_user_merchant = FeatureView(\n    name=\"transactions_user_merchant\",\n    entities=[entity_user_merchant__user_id, entity_user_merchant__merchant_id],",
		`features=[view_transactions_user_merchant[["pair_sum_7d"]]],`,
	} {
		if !strings.Contains(string(defs), want) {
			t.Errorf("%s lacks\n%s\n--- got ---\n%s", Definitions, want, defs)
		}
	}
}
