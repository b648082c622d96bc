package lookup

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations/aggtest"
)

var update = flag.Bool("update", false, "rewrite pipeline/lookup/testdata/*.golden with the current answers")

// errorBody is the JSON error envelope every failed request gets.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// The error fixture bounds bodies and keys low, so the limits are cheap to hit.
const (
	testMaxBody = 4096
	testMaxKeys = 50
)

func manyKeys(n int) string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("%q", fmt.Sprintf("k%d", i))
	}
	return "[" + strings.Join(ks, ",") + "]"
}

func TestErrors(t *testing.T) {
	ready := newFixture(t, Options{MaxBodyBytes: testMaxBody, MaxKeys: testMaxKeys}, true)
	warming := newFixture(t, Options{}, false)
	for _, tc := range []struct {
		name         string
		warming      bool
		method, path string
		body         string
		status       int
		code         string
		msg          string // a part of the message that tells the caller what to fix
		allow        string // expected Allow header (405 only)
	}{
		{name: "unknown entity is 404 and lists the entities", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"shop","keys":["a"],"features":["txn_count_7d"]}`,
			status: 404, code: "unknown_entity", msg: `unknown entity "shop"; entities: user, merchant`},
		{name: "unknown entity in the path is 404", method: "GET", path: "/v1/features/shop/a",
			status: 404, code: "unknown_entity", msg: `unknown entity "shop"`},
		{name: "unknown feature is 404 with a suggestion", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"],"features":["txn_count_7"]}`,
			status: 404, code: "unknown_feature", msg: `did you mean "txn_count_7d"`},
		{name: "unknown version is 404 and lists the versions", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"],"features":["txn_amount_avg@3"]}`,
			status: 404, code: "unknown_feature", msg: "txn_amount_avg has versions 1, 2"},
		{name: "version must be a positive integer", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"],"features":["txn_amount_avg@x"]}`,
			status: 404, code: "unknown_feature", msg: "version after @ must be a positive integer"},
		{name: "feature of another entity is 400", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"],"features":["txn_count_7d","review_rating_avg_30d"]}`,
			status: 400, code: "wrong_entity", msg: "feature review_rating_avg_30d@1 belongs to entity merchant, not user"},
		{name: "missing entity is 400", method: "POST", path: "/v1/lookup",
			body:   `{"keys":["u1"],"features":["txn_count_7d"]}`,
			status: 400, code: "missing_entity", msg: `"entity" is required`},
		{name: "missing keys is 400", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","features":["txn_count_7d"]}`,
			status: 400, code: "missing_keys", msg: `"keys" must list at least one entity key`},
		{name: "empty keys is 400", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":[],"features":["txn_count_7d"]}`,
			status: 400, code: "missing_keys", msg: `"keys" must list at least one entity key`},
		{name: "missing features is 400", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"]}`,
			status: 400, code: "missing_features", msg: `"features" must name at least one feature of entity user`},
		{name: "malformed JSON is 400", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user",`,
			status: 400, code: "malformed_body", msg: "invalid JSON body"},
		{name: "a field of the wrong type is 400", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":"u1","features":["txn_count_7d"]}`,
			status: 400, code: "malformed_body", msg: "cannot unmarshal string into Go struct field lookupBody.keys"},
		{name: "unknown JSON field is 400", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","key":["u1"],"features":["txn_count_7d"]}`,
			status: 400, code: "malformed_body", msg: `unknown field "key"`},
		{name: "trailing data after the object is 400", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"],"features":["txn_count_7d"]} {}`,
			status: 400, code: "malformed_body", msg: "unexpected data after the JSON object"},
		{name: "empty body is 400", method: "POST", path: "/v1/lookup",
			status: 400, code: "malformed_body", msg: "empty body: send a JSON object"},
		{name: "whitespace-only body is 400", method: "POST", path: "/v1/lookup", body: " \n\t ",
			status: 400, code: "malformed_body", msg: "empty body: send a JSON object"},
		{name: "body over MaxBodyBytes is 413", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["` + strings.Repeat("k", testMaxBody) + `"],"features":["txn_count_7d"]}`,
			status: 413, code: "body_too_large", msg: fmt.Sprintf("request body exceeds %d bytes", testMaxBody)},
		{name: "trailing bytes past MaxBodyBytes are 413", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"],"features":["txn_count_7d"]}` + strings.Repeat(" ", testMaxBody),
			status: 413, code: "body_too_large", msg: fmt.Sprintf("request body exceeds %d bytes", testMaxBody)},
		{name: "more keys than MaxKeys is 400", method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":` + manyKeys(testMaxKeys+1) + `,"features":["txn_count_7d"]}`,
			status: 400, code: "too_many_keys", msg: fmt.Sprintf("%d keys in one request; the limit is %d", testMaxKeys+1, testMaxKeys)},
		{name: "feast: join keys of no one entity are 400", method: "POST", path: "/get-online-features",
			body:   `{"features":["txn_count_7d"],"entities":{"user_id":["u1"],"merchant_id":["m1"]}}`,
			status: 400, code: "unknown_entity", msg: `no entity has join keys merchant_id, user_id; join keys: user_id, merchant_id`},
		{name: "feast: unknown join key is 400", method: "POST", path: "/get-online-features",
			body:   `{"features":["txn_count_7d"],"entities":{"customer_id":["u1"]}}`,
			status: 400, code: "unknown_entity", msg: `no entity has join key "customer_id"`},
		{name: "feast: fractional numeric key is 400", method: "POST", path: "/get-online-features",
			body:   `{"features":["txn_count_7d"],"entities":{"user_id":[1.5]}}`,
			status: 400, code: "bad_entities", msg: "entities.user_id[0]: 1.5 is not an integer key"},
		{name: "feast: keys are strings or integers", method: "POST", path: "/get-online-features",
			body:   `{"features":["txn_count_7d"],"entities":{"user_id":["u1",true]}}`,
			status: 400, code: "bad_entities", msg: "entities.user_id[1]: keys must be strings or integers"},
		{name: "feast: missing keys is 400", method: "POST", path: "/get-online-features",
			body:   `{"features":["txn_count_7d"],"entities":{"user_id":[]}}`,
			status: 400, code: "missing_keys", msg: `"keys" must list at least one entity key`},
		{name: "feast: more keys than MaxKeys is 400", method: "POST", path: "/get-online-features",
			body:   `{"features":["txn_count_7d"],"entities":{"user_id":` + manyKeys(testMaxKeys+1) + `}}`,
			status: 400, code: "too_many_keys", msg: fmt.Sprintf("the limit is %d", testMaxKeys)},
		{name: "feast: missing features is 400", method: "POST", path: "/get-online-features",
			body:   `{"entities":{"user_id":["u1"]}}`,
			status: 400, code: "missing_features", msg: `"features" must name at least one feature of entity user`},
		{name: "feast: feature of another entity is 400", method: "POST", path: "/get-online-features",
			body:   `{"features":["reviews:review_rating_avg_30d"],"entities":{"user_id":["u1"]}}`,
			status: 400, code: "wrong_entity", msg: "belongs to entity merchant, not user"},
		{name: "feast: unknown JSON fields are ignored (as Feast does), a body without entities is still 400", method: "POST", path: "/get-online-features",
			body:   `{"features":["txn_count_7d"],"entity_rows":[{"user_id":"u1"}]}`,
			status: 400, code: "bad_entities", msg: `"entities" must map exactly one join key`},
		{name: "unknown route is a JSON 404 listing the routes", method: "GET", path: "/v2/lookup",
			status: 404, code: "not_found", msg: "no route GET /v2/lookup; routes: POST /v1/lookup"},
		{name: "entity route without a key is a JSON 404", method: "GET", path: "/v1/features/user",
			status: 404, code: "not_found", msg: "no route GET /v1/features/user"},
		{name: "GET on the lookup route is 405", method: "GET", path: "/v1/lookup",
			status: 405, code: "method_not_allowed", msg: "GET /v1/lookup is not supported; use POST", allow: "POST"},
		{name: "DELETE on the entity route is 405", method: "DELETE", path: "/v1/features/user/u1",
			status: 405, code: "method_not_allowed", msg: "use GET", allow: "GET"},
		{name: "GET on the feast route is 405", method: "GET", path: "/get-online-features",
			status: 405, code: "method_not_allowed", msg: "use POST", allow: "POST"},
		{name: "POST on healthz is 405", method: "POST", path: "/healthz",
			status: 405, code: "method_not_allowed", msg: "POST /healthz is not supported; use GET", allow: "GET"},
		{name: "PUT on readyz is 405", method: "PUT", path: "/readyz",
			status: 405, code: "method_not_allowed", msg: "use GET", allow: "GET"},
		{name: "POST on metrics is 405", method: "POST", path: "/metrics",
			status: 405, code: "method_not_allowed", msg: "use GET", allow: "GET"},
		{name: "lookup while catching up is 503", warming: true, method: "POST", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"],"features":["txn_count_7d"]}`,
			status: 503, code: "not_ready", msg: "still catching up with the feature log"},
		{name: "entity lookup while catching up is 503", warming: true, method: "GET", path: "/v1/features/user/u1",
			status: 503, code: "not_ready", msg: "still catching up"},
		{name: "feast while catching up is 503", warming: true, method: "POST", path: "/get-online-features",
			body:   `{"features":["txn_count_7d"],"entities":{"user_id":["u1"]}}`,
			status: 503, code: "not_ready", msg: "still catching up"},
		{name: "readyz while catching up is 503", warming: true, method: "GET", path: "/readyz",
			status: 503, code: "not_ready", msg: "catching up with the feature log"},
		{name: "not ready is checked before the body", warming: true, method: "POST", path: "/v1/lookup",
			body:   `{`,
			status: 503, code: "not_ready", msg: "retry shortly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := ready
			if tc.warming {
				fx = warming
			}
			rec := fx.do(t, tc.method, tc.path, tc.body)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var eb errorBody
			dec := json.NewDecoder(rec.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&eb); err != nil {
				t.Fatalf("error body is not the JSON envelope: %v", err)
			}
			if eb.Error.Code != tc.code {
				t.Errorf("code %q, want %q (message %q)", eb.Error.Code, tc.code, eb.Error.Message)
			}
			if !strings.Contains(eb.Error.Message, tc.msg) {
				t.Errorf("message %q does not contain %q", eb.Error.Message, tc.msg)
			}
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow header %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestProbes(t *testing.T) {
	ready := newFixture(t, Options{}, true)
	warming := newFixture(t, Options{}, false)
	for _, tc := range []struct {
		name   string
		fx     *fixture
		path   string
		status int
		want   string
	}{
		{"healthz is 200 once ready", ready, "/healthz", 200, `{"status":"ok"}`},
		{"healthz is 200 while catching up (liveness is not readiness)", warming, "/healthz", 200, `{"status":"ok"}`},
		{"readyz is 200 once caught up", ready, "/readyz", 200, `{"status":"ready"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tc.fx.do(t, "GET", tc.path, "")
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d", rec.Code, tc.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if got := strings.TrimSpace(rec.Body.String()); got != tc.want {
				t.Errorf("body %s, want %s", got, tc.want)
			}
		})
	}
}

// golden compares got, indented, with testdata/name.golden, or rewrites the
// file under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, got, "", "  "); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, got)
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pipeline/lookup -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("answer differs from %s (go test -update rewrites it after review):\n got: %s\nwant: %s", path, buf.Bytes(), want)
	}
}

// checkLookup compares every value of a lookup answer with the brute force
// over the fixture events, and the shape with the request.
func (fx *fixture) checkLookup(t *testing.T, body []byte, wantKeys, names []string) LookupResponse {
	t.Helper()
	var resp LookupResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&resp); err != nil {
		t.Fatalf("decode answer: %v", err)
	}
	if !resp.AsOf.Equal(fixtureNow) {
		t.Errorf("as_of %s, want the service clock %s", resp.AsOf, fixtureNow)
	}
	if len(resp.Results) != len(wantKeys) {
		t.Fatalf("%d results for %d keys", len(resp.Results), len(wantKeys))
	}
	for i, r := range resp.Results {
		if r.Key != wantKeys[i] {
			t.Errorf("results[%d].key %q, want %q (request order)", i, r.Key, wantKeys[i])
		}
		if len(r.Features) != len(names) {
			t.Errorf("%s: %d features, want %d", r.Key, len(r.Features), len(names))
		}
		for _, name := range names {
			f, err := fx.cfg.Feature(name)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := r.Features[name]
			if !ok {
				t.Errorf("%s: feature %s missing from the answer", r.Key, name)
				continue
			}
			want := fx.expect(t, f, r.Key)
			if (got.Value == nil) != (want.value == nil) || (got.Value != nil && !aggtest.Close(*got.Value, *want.value)) {
				t.Errorf("%s %s: value %s, brute force %s", r.Key, name, fmtValue(got.Value), fmtValue(want.value))
			}
			if got.Status != want.status {
				t.Errorf("%s %s: status %s, want %s", r.Key, name, got.Status, want.status)
			}
			if got.Version != f.Version {
				t.Errorf("%s %s: version %d, want %d", r.Key, name, got.Version, f.Version)
			}
			if (got.UpdatedAt == nil) != (want.updated == nil) || (got.UpdatedAt != nil && !got.UpdatedAt.Equal(*want.updated)) {
				t.Errorf("%s %s: updated_at %v, want %v", r.Key, name, got.UpdatedAt, want.updated)
			}
		}
	}
	return resp
}

func TestLookupAnswers(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	allUsers := []string{"u1", "u2", "42", "u404", "u7", "u8"}
	for _, tc := range []struct {
		golden       string
		keys         []string
		features     []string
		wantWarnings []string
	}{
		{golden: "lookup_statuses", keys: allUsers,
			features: []string{"txn_count_7d", "txn_amount_sum_1h", "txn_amount_min_7d", "txn_amount_last", "login_count_lifetime", "login_count_1h"}},
		{golden: "lookup_versions", keys: []string{"u1", "u2"},
			features: []string{"txn_amount_avg", "txn_amount_avg@1", "txn_amount_avg@2"}},
		{golden: "lookup_deprecated", keys: []string{"u1"}, features: []string{"txn_amount_max_30d"},
			wantWarnings: []string{"feature txn_amount_max_30d@1 is deprecated"}},
		{golden: "lookup_merchant", keys: []string{"m1", "m2"}, features: []string{"review_rating_avg_30d"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			entity := "user"
			if tc.golden == "lookup_merchant" {
				entity = "merchant"
			}
			body, _ := json.Marshal(LookupRequest{Entity: entity, Keys: tc.keys, Features: tc.features})
			rec := fx.do(t, "POST", "/v1/lookup", string(body))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			golden(t, tc.golden, rec.Body.Bytes())
			resp := fx.checkLookup(t, rec.Body.Bytes(), tc.keys, tc.features)
			if !slices.Equal(resp.Warnings, tc.wantWarnings) {
				t.Errorf("warnings %q, want %q", resp.Warnings, tc.wantWarnings)
			}
		})
	}
}

// TestLookupRules pins the rules the brute-force comparison alone would not
// show are exercised: each names one cell of an answer and what it must be.
func TestLookupRules(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	num := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		rule    string
		key     string
		feature string
		status  string
		value   *float64 // nil: null
		version int
	}{
		{"empty avg window is null", "u2", "txn_amount_avg@1", StatusEmptyWindow, nil, 1},
		{"empty count window is 0", "u2", "txn_count_7d", StatusEmptyWindow, num(0), 1},
		{"empty sum window is 0", "u2", "txn_amount_sum_1h", StatusEmptyWindow, num(0), 1},
		{"a default replaces the null of an empty window", "u2", "txn_amount_min_7d", StatusEmptyWindow, num(-1), 1},
		{"a default does not answer an unknown key", "u404", "txn_amount_min_7d", StatusNotFound, nil, 1},
		{"an unknown key has a null avg", "u404", "txn_amount_avg", StatusNotFound, nil, 2},
		{"an unknown key has a null count", "u404", "txn_count_7d", StatusNotFound, nil, 1},
		{"an unknown key has a null sum", "u404", "txn_amount_sum_1h", StatusNotFound, nil, 1},
		{"a key whose only event is at T is unknown", "u7", "login_count_lifetime", StatusNotFound, nil, 1},
		{"a key whose only event is after T is unknown", "u8", "login_count_lifetime", StatusNotFound, nil, 1},
		{"a known key counts 0 in a source it never had", "u2", "login_count_lifetime", StatusEmptyWindow, num(0), 1},
		{"a known key counts 0 where every tile expired", "u2", "txn_count_7d", StatusEmptyWindow, num(0), 1},
		{"a known key sums 0 where every tile expired", "u2", "txn_amount_sum_1h", StatusEmptyWindow, num(0), 1},
		{"a known key has a null avg where every tile expired", "u2", "txn_amount_avg@2", StatusEmptyWindow, nil, 2},
		{"lifetime windows keep events older than every finite window", "u2", "txn_amount_last", StatusPresent, nil, 1},
		{"the event at T is excluded, the one at T-1ms is the last", "u1", "txn_amount_last", StatusPresent, num(3.25), 1},
		{"a name without version is the newest version", "u1", "txn_amount_avg", StatusPresent, nil, 2},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			body, _ := json.Marshal(LookupRequest{Entity: "user", Keys: []string{tc.key}, Features: []string{tc.feature}})
			rec := fx.do(t, "POST", "/v1/lookup", string(body))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var resp LookupResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			got := resp.Results[0].Features[tc.feature]
			if got.Status != tc.status || got.Version != tc.version {
				t.Errorf("status %s version %d, want %s version %d", got.Status, got.Version, tc.status, tc.version)
			}
			// A nil tc.value with PRESENT means "any value": the brute
			// force in TestLookupAnswers checks it.
			switch {
			case tc.value != nil && (got.Value == nil || *got.Value != *tc.value):
				t.Errorf("value %s, want %s", fmtValue(got.Value), fmtValue(tc.value))
			case tc.value == nil && tc.status != StatusPresent && got.Value != nil:
				t.Errorf("value %s, want null", fmtValue(got.Value))
			case tc.status == StatusPresent && got.Value == nil:
				t.Errorf("value null, want a value")
			}
		})
	}
}

func TestEntityRoute(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	for _, key := range []string{"u1", "u2", "u404", "u7"} {
		t.Run(key, func(t *testing.T) {
			rec := fx.do(t, "GET", "/v1/features/user/"+key, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			golden(t, "entity_"+key, rec.Body.Bytes())
			// Every feature name of the entity, once, at its newest version.
			var names []string
			for _, f := range fx.cfg.EntityFeatures("user") {
				if !slices.Contains(names, f.Name) {
					names = append(names, f.Name)
				}
			}
			fx.checkLookup(t, rec.Body.Bytes(), []string{key}, names)
		})
	}
}

func TestFeast(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	for _, tc := range []struct {
		golden string
		body   string
		// names are the expected metadata.feature_names after the join key.
		names []string
		refs  []string
	}{
		{golden: "feast",
			body:  `{"features":["user_stats:txn_amount_avg","user_stats:txn_count_7d","login_count_1h","txn_amount_min_7d@1"],"entities":{"user_id":["u1",42,"u2","u404","u7"]},"include_feature_view_version_metadata":false}`,
			names: []string{"txn_amount_avg", "txn_count_7d", "login_count_1h", "txn_amount_min_7d@1"},
			refs:  []string{"txn_amount_avg", "txn_count_7d", "login_count_1h", "txn_amount_min_7d@1"}},
		{golden: "feast_full_names",
			body:  `{"features":["user_stats:txn_amount_last","logins:login_count_lifetime"],"entities":{"user_id":["u2","u1"]},"full_feature_names":true}`,
			names: []string{"user_stats__txn_amount_last", "logins__login_count_lifetime"},
			refs:  []string{"txn_amount_last", "login_count_lifetime"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			rec := fx.do(t, "POST", "/get-online-features", tc.body)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			golden(t, tc.golden, rec.Body.Bytes())

			var req FeastRequest
			if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, k := range req.Entities["user_id"] {
				keys = append(keys, fmt.Sprint(k))
			}
			var resp FeastResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			wantNames := append([]string{"user_id"}, tc.names...)
			if !slices.Equal(resp.Metadata.FeatureNames, wantNames) {
				t.Fatalf("feature_names %q, want %q (join key first)", resp.Metadata.FeatureNames, wantNames)
			}
			if len(resp.Results) != len(wantNames) {
				t.Fatalf("%d columns, want %d", len(resp.Results), len(wantNames))
			}
			zero := time.Unix(0, 0).UTC().Format(time.RFC3339)
			for i, k := range keys {
				if c := resp.Results[0]; c.Values[i] != k || c.Statuses[i] != "PRESENT" || c.EventTimestamps[i] != zero {
					t.Errorf("join key column row %d: %v %s %s, want %s PRESENT %s", i, c.Values[i], c.Statuses[i], c.EventTimestamps[i], k, zero)
				}
			}
			for j, ref := range tc.refs {
				f, err := fx.cfg.Feature(ref)
				if err != nil {
					t.Fatal(err)
				}
				col := resp.Results[j+1]
				if len(col.Values) != len(keys) || len(col.Statuses) != len(keys) || len(col.EventTimestamps) != len(keys) {
					t.Fatalf("column %s has %d/%d/%d rows, want %d", ref, len(col.Values), len(col.Statuses), len(col.EventTimestamps), len(keys))
				}
				for i, k := range keys {
					want := fx.expect(t, f, k)
					wantStatus, wantTS := "PRESENT", zero
					switch {
					case want.status == StatusNotFound:
						wantStatus = "NOT_FOUND"
					case want.value == nil:
						wantStatus = "NULL_VALUE"
					}
					// Feast's shape: a known key's value (an empty window's
					// real 0 included) is PRESENT; NOT_FOUND and NULL_VALUE
					// cells are null.
					if want.status == StatusNotFound {
						want.value = nil
					}
					if want.updated != nil {
						wantTS = want.updated.Format(time.RFC3339Nano)
					}
					got, isNum := col.Values[i].(float64)
					switch {
					case want.value == nil && col.Values[i] != nil:
						t.Errorf("%s %s: value %v, want null", k, ref, col.Values[i])
					case want.value != nil && (!isNum || !aggtest.Close(got, *want.value)):
						t.Errorf("%s %s: value %v, brute force %v", k, ref, col.Values[i], *want.value)
					}
					if col.Statuses[i] != wantStatus {
						t.Errorf("%s %s: status %s, want %s", k, ref, col.Statuses[i], wantStatus)
					}
					if col.EventTimestamps[i] != wantTS {
						t.Errorf("%s %s: event timestamp %s, want %s", k, ref, col.EventTimestamps[i], wantTS)
					}
				}
			}
		})
	}
}
