package lookup

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// compositeFixture serves a composite entity (user_id, merchant_id) whose
// feature is re-keyed from transactions, beside the single-key user.
func compositeFixture(t *testing.T) *fixture {
	t.Helper()
	schema, err := filepath.Abs("../../schemas/transaction.avsc")
	if err != nil {
		t.Fatal(err)
	}
	doc := `kafka:
  feature_log_topic: features
entities:
  - {name: user, key: user_id}
  - {name: user_merchant, keys: [user_id, merchant_id]}
sources:
  - {name: transactions, topic: transactions, schema: ` + schema + `, event_time: ts, entity: user}
features:
  - {name: txn_count_7d, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, owner: o, description: d}
  - {name: pair_amount_sum_7d, version: 1, entity: user_merchant, source: transactions, aggregation: sum, field: amount, window: 7d, owner: o, description: d}
`
	path := filepath.Join(t.TempDir(), "features.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	T := fixtureNow.UnixMilli()
	pair := keys.EntityKey([]string{"u1", "m9"})
	ev := fixtureEvents{"transactions": {
		"u1": {{TS: T - aggregations.Hour, Seq: 1, Value: 10}, {TS: T - 2*aggregations.Hour, Seq: 2, Value: 5}},
		pair: {{TS: T - aggregations.Hour, Seq: 1, Value: 10}, {TS: T - 2*aggregations.Hour, Seq: 2, Value: 5}},
	}}
	st := openTestStore(t)
	writeView(t, st, cfg, ev, T)
	svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: st, Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	svc.setCatchUp(map[int32]int64{}, nil)
	svc.registryCaughtUp()
	return &fixture{svc: svc, cfg: cfg, events: ev, T: T, h: svc.Handler()}
}

func TestCompositeKeyLookups(t *testing.T) {
	fx := compositeFixture(t)
	want, _ := aggtest.BruteForce(aggregations.Sum, aggregations.Window{Size: 7 * aggregations.Day, Hop: aggregations.Hour}, fx.events["transactions"][`["u1","m9"]`], fx.T)
	if want != 15 {
		t.Fatalf("brute force %v, want 15: the fixture is broken", want)
	}
	t.Run("an object key reads the composite entity", func(t *testing.T) {
		// Fields in any order; integers are keys too (as decimal text).
		rec := fx.do(t, "POST", "/v1/lookup", `{"entity":"user_merchant","keys":[{"merchant_id":"m9","user_id":"u1"},{"user_id":"u1","merchant_id":"m404"}],"features":["pair_amount_sum_7d"]}`)
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
		var resp LookupResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		got := resp.Results[0].Features["pair_amount_sum_7d"]
		if resp.Results[0].Key != `["u1","m9"]` || got.Value == nil || *got.Value != want || got.Status != StatusPresent {
			t.Errorf("result 0 = %s %+v, want key [\"u1\",\"m9\"] value %v PRESENT", resp.Results[0].Key, got, want)
		}
		if nf := resp.Results[1].Features["pair_amount_sum_7d"]; nf.Value != nil || nf.Status != StatusNotFound {
			t.Errorf("unknown pair: %+v, want null NOT_FOUND", nf)
		}
	})
	t.Run("a single-key entity takes a string or a one-field object", func(t *testing.T) {
		rec := fx.do(t, "POST", "/v1/lookup", `{"entity":"user","keys":["u1",{"user_id":"u1"}],"features":["txn_count_7d"]}`)
		var resp LookupResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d %v: %s", rec.Code, err, rec.Body)
		}
		for i, r := range resp.Results {
			if v := r.Features["txn_count_7d"].Value; r.Key != "u1" || v == nil || *v != 2 {
				t.Errorf("result %d = %s %v, want u1 2", i, r.Key, v)
			}
		}
	})
	t.Run("GET takes the composite key's JSON array", func(t *testing.T) {
		rec := fx.do(t, "GET", "/v1/features/user_merchant/"+`%5B%22u1%22,%22m9%22%5D`, "")
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"value":15`) {
			t.Errorf("HTTP %d: %s", rec.Code, rec.Body)
		}
	})
	t.Run("feast: two join keys", func(t *testing.T) {
		rec := fx.do(t, "POST", "/get-online-features", `{"features":["transactions:pair_amount_sum_7d"],"entities":{"merchant_id":["m9","m1"],"user_id":["u1","u1"]}}`)
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
		var resp FeastResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		if names := strings.Join(resp.Metadata.FeatureNames, ","); names != "user_id,merchant_id,pair_amount_sum_7d" {
			t.Fatalf("columns %s, want user_id,merchant_id,pair_amount_sum_7d (join keys in the entity's order)", names)
		}
		if resp.Results[0].Values[0] != "u1" || resp.Results[1].Values[0] != "m9" || resp.Results[1].Values[1] != "m1" {
			t.Errorf("key columns %v %v", resp.Results[0].Values, resp.Results[1].Values)
		}
		col := resp.Results[2]
		if col.Values[0] != want || col.Statuses[0] != feastPresent || col.Values[1] != nil || col.Statuses[1] != feastNotFound {
			t.Errorf("feature column %+v, want [%v PRESENT, null NOT_FOUND]", col, want)
		}
	})
	for _, tc := range []struct {
		name, path, body, code, msg string
	}{
		{"a string key of a composite entity", "/v1/lookup", `{"entity":"user_merchant","keys":["u1"],"features":["pair_amount_sum_7d"]}`,
			"bad_key", `keys[0]: entity user_merchant has a composite key: give each key as an object with its fields user_id, merchant_id, e.g. {"user_id":"...","merchant_id":"..."}`},
		{"a missing key field", "/v1/lookup", `{"entity":"user_merchant","keys":[{"user_id":"u1","merchant_id":"m9"},{"user_id":"u1"}],"features":["pair_amount_sum_7d"]}`,
			"bad_key", `keys[1]: missing key field "merchant_id" of entity user_merchant (key fields: user_id, merchant_id)`},
		{"an extra key field", "/v1/lookup", `{"entity":"user_merchant","keys":[{"user_id":"u1","merchant_id":"m9","shop_id":"s"}],"features":["pair_amount_sum_7d"]}`,
			"bad_key", `keys[0]: "shop_id" is not a key field of entity user_merchant; its key fields: user_id, merchant_id`},
		{"an extra field on a single-key entity", "/v1/lookup", `{"entity":"user","keys":[{"user_id":"u1","merchant_id":"m9"}],"features":["txn_count_7d"]}`,
			"bad_key", `keys[0]: "merchant_id" is not a key field of entity user; its key fields: user_id`},
		{"a key field of the wrong type", "/v1/lookup", `{"entity":"user_merchant","keys":[{"user_id":"u1","merchant_id":true}],"features":["pair_amount_sum_7d"]}`,
			"bad_key", `keys[0].merchant_id: a key field's value must be a string or an integer`},
		{"a key that is neither a string nor an object", "/v1/lookup", `{"entity":"user","keys":[7],"features":["txn_count_7d"]}`,
			"bad_key", `keys[0]: a key is a string (or an object {"user_id": "..."}); got 7`},
		{"feast: join key columns of different lengths", "/get-online-features", `{"features":["pair_amount_sum_7d"],"entities":{"user_id":["u1"],"merchant_id":["m9","m1"]}}`,
			"bad_entities", "entities.user_id has 1 keys and entities.merchant_id 2"},
		{"feast: one join key of a composite entity", "/get-online-features", `{"features":["pair_amount_sum_7d"],"entities":{"merchant_id":["m9"]}}`,
			"unknown_entity", `no entity has join key "merchant_id"; join keys: user_id, [user_id, merchant_id]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := fx.do(t, "POST", tc.path, tc.body)
			var eb errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || rec.Code != http.StatusBadRequest {
				t.Fatalf("HTTP %d %v: %s", rec.Code, err, rec.Body)
			}
			if eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.msg) {
				t.Errorf("got %s: %s\nwant %s: ...%s...", eb.Error.Code, eb.Error.Message, tc.code, tc.msg)
			}
		})
	}
	t.Run("GET with a key that is not a composite key's array", func(t *testing.T) {
		rec := fx.do(t, "GET", "/v1/features/user_merchant/u1", "")
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "entity user_merchant has a composite key") {
			t.Errorf("HTTP %d: %s", rec.Code, rec.Body)
		}
	})
}
