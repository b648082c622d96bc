package lookup

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzLookupRequest throws arbitrary methods, paths and bodies at the HTTP
// API. Whatever the input: no panic, never a 5xx (nothing a client sends is
// the server's fault), and every answer outside /metrics is a JSON document
// with Content-Type application/json, except the mux's own redirects to a
// cleaned path. A 405 always says which method to use in Allow.
//
//	go test ./pipeline/lookup -run '^$' -fuzz FuzzLookupRequest -fuzztime 60s
func FuzzLookupRequest(f *testing.F) {
	for _, seed := range []struct{ method, path, body string }{
		{"POST", "/v1/lookup", `{"entity":"user","keys":["u1","u2","42","u404"],"features":["txn_amount_avg","txn_amount_avg@1","txn_count_7d","txn_amount_min_7d","txn_amount_max_30d"]}`},
		{"POST", "/v1/lookup", `{"entity":"merchant","keys":["m1"],"features":["review_rating_avg_30d"]}`},
		{"POST", "/v1/lookup", `{"entity":"user","keys":["u1"],"features":["review_rating_avg_30d"]}`},
		{"POST", "/v1/lookup", `{"entity":"user","keys":["u1"],"features":["txn_amount_avg@0"]}`},
		{"POST", "/v1/lookup", `{"entity":"user","keys":[],"features":[]}`},
		{"POST", "/v1/lookup", `{"entity":"user","keys":["u1"],"features":["x"]} trailing`},
		{"POST", "/v1/lookup", `{"entity":"user","keys":null,"features":null,"extra":1}`},
		{"POST", "/v1/lookup", `[{"entity":"user"}]`},
		{"POST", "/v1/lookup", `{"entity":"\u0000","keys":["\ud800"],"features":["@"]}`},
		{"POST", "/v1/lookup", ``},
		{"POST", "/v1/lookup", `{`},
		{"GET", "/v1/lookup", ``},
		{"GET", "/v1/features/user/u1", ``},
		{"GET", "/v1/features/merchant/m1", ``},
		{"GET", "/v1/features/user/a%2Fb", ``},
		{"GET", "/v1/features/nobody/u1", ``},
		{"DELETE", "/v1/features/user/u1", ``},
		{"POST", "/get-online-features", `{"features":["v:txn_amount_avg","txn_count_7d"],"entities":{"user_id":["u1",42,-1e300]},"full_feature_names":true}`},
		{"POST", "/get-online-features", `{"features":["txn_count_7d"],"entities":{"user_id":[1e19, 9007199254740993]}}`},
		{"POST", "/get-online-features", `{"features":["txn_count_7d"],"entities":{"user_id":[{"a":1}],"merchant_id":["m1"]}}`},
		{"POST", "/get-online-features", `{"feature_service":"s","request_context":{"a":[1,"b",null]}}`},
		{"GET", "/healthz", ``},
		{"GET", "/readyz", ``},
		{"HEAD", "/readyz", ``},
		{"OPTIONS", "/v1/lookup", ``},
		{"GET", "/", ``},
		{"GET", "/v1//lookup/../features/user/u1", ``},
		{"PATCH", "/nowhere?x=1", `{}`},
	} {
		f.Add(seed.method, seed.path, seed.body)
	}
	fx := newFixture(f, Options{MaxBodyBytes: 1 << 16, MaxKeys: 100}, true)
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://lookup.test"+path, strings.NewReader(body))
		if err != nil {
			t.Skip("not a request a client can send:", err)
		}
		req.RequestURI = req.URL.RequestURI()
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: status %d: %s", method, path, rec.Code, rec.Body)
		}
		if rec.Code >= 300 && rec.Code < 400 {
			if rec.Header().Get("Location") == "" {
				t.Fatalf("%s %q: redirect %d without Location", method, path, rec.Code)
			}
			return
		}
		if req.URL.Path == "/metrics" && rec.Code == http.StatusOK {
			return
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %q: status %d with Content-Type %q: %s", method, path, rec.Code, ct, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %q: status %d with a body that is not JSON: %q", method, path, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
			t.Fatalf("%s %q: 405 without an Allow header", method, path)
		}
		if rec.Code != http.StatusOK {
			var eb errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
				t.Fatalf("%s %q: status %d without the error envelope: %s", method, path, rec.Code, rec.Body)
			}
		}
	})
}
