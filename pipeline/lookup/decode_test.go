package lookup

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// decoderSeeds are lookup bodies of the common shape and near it: each
// side of every rule of parseLookupFast.
var decoderSeeds = []string{
	`{"entity":"user","keys":["u1"],"features":["txn_amount_avg","txn_count_7d"]}`,
	`{"entity":"user","keys":["u1","u2","42","u404"],"features":["txn_amount_avg","txn_amount_avg@1","txn_count_7d","txn_amount_max_30d"]}`,
	` { "entity" : "user" , "keys" : [ "u1" , "u2" ] , "features" : [ "txn_count_7d" ] } ` + "\n\t\r",
	`{"features":["txn_count_7d"],"keys":["u1"],"entity":"user"}`,
	`{"entity":"user","keys":["u1"],"feature_service":"fraud_scoring"}`,
	`{"entity":"user","keys":["u1"],"features":["txn_count_7d"],"feature_service":""}`,
	`{"entity":"user","keys":["u1"],"features":["txn_count_7d"],"feature_service":"fraud_scoring"}`,
	`{"entity":"user","keys":["héllo","日本語","🙂"],"features":["txn_count_7d"]}`,
	`{"entity":"user","keys":["bad\xffutf8"],"features":["txn_count_7d"]}`,
	`{"entity":"user","keys":["\xed\xa0\x80"],"features":["txn_count_7d"]}`,
	`{"entity":"user","keys":["a\u0062","tab\tin"],"features":["txn_count_7d"]}`,
	`{"entity":"user","keys":["a\\\"b"],"features":["txn_count_7d"]}`,
	`{"entity":"user","keys":[{"user_id":"u1"}],"features":["txn_count_7d"]}`,
	`{"entity":"user","keys":[7],"features":["txn_count_7d"]}`,
	`{"entity":"user","keys":[null],"features":["txn_count_7d"]}`,
	`{"entity":"user_merchant","keys":["u1"],"features":["user_merchant_amount_sum_30d"]}`,
	`{"entity":"user_merchant","keys":[{"user_id":"u1","merchant_id":"m1"}],"features":["user_merchant_amount_sum_30d"]}`,
	`{"entity":"merchant","keys":["m1"],"features":["review_rating_avg_30d"]}`,
	`{"Entity":"user","KEYS":["u1"],"features":["txn_count_7d"]}`,
	`{"entity":"shop","entity":"user","keys":["u1"],"features":["txn_count_7d"]}`,
	`{"entity":"user","keys":["u1"],"keys":["u2"],"features":["txn_count_7d"]}`,
	`{"entity":null,"keys":null,"features":null}`,
	`{"entity":"user","keys":[],"features":[]}`,
	`{"entity":"user","keys":["u1",],"features":["txn_count_7d"]}`,
	`{"entity":"user","keys":["u1"],"features":["txn_count_7d"],}`,
	`{"entity":"user","keys":["u1"] "features":["txn_count_7d"]}`,
	`{"entity":"user","keys":["u1"],"features":["txn_count_7d"]} {}`,
	`{"entity":"user","keys":["u1"],"features":["txn_count_7d"]}x`,
	`{"entity":"user","keys":["u1"],"features":["txn_count_7d"],"extra":1}`,
	`{"entity":"user","keys":["u1"],"features":["txn_count_7d"]`,
	`{"entity":"user","keys":["u1"],"features":["txn_count_7d"`,
	`{"entity":"user","keys":["u1`,
	`{"entity" "user"}`,
	"\ufeff{\"entity\":\"user\"}",
	`{}`, ` {} `, `{`, `}`, `[]`, `"user"`, `null`, ``, ` `,
}

// FuzzLookupBodyDecoders holds the fast decoder to encoding/json: whenever
// parseLookupFast accepts a body, encoding/json (decodeBody into
// lookupBody, then requestKeys) accepts it too with the same entity,
// feature service, features and keys.
//
//	go test ./pipeline/lookup -run '^$' -fuzz FuzzLookupBodyDecoders -fuzztime 60s
func FuzzLookupBodyDecoders(f *testing.F) {
	for _, s := range decoderSeeds {
		f.Add([]byte(s))
	}
	single := &entityInfo{name: "user", keys: []string{"user_id"}}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := parseLookupFast(body, nil, nil)
		if !ok {
			return
		}
		var slow lookupBody
		if err := decodeBody(bytes.NewReader(body), &slow, true); err != nil {
			t.Fatalf("%q: the fast decoder accepted what encoding/json rejects: %v", body, err)
		}
		keyList, err := requestKeys(single, slow.Keys)
		if err != nil {
			t.Fatalf("%q: the fast decoder accepted keys requestKeys rejects: %v", body, err)
		}
		if fast.entity != slow.Entity || fast.service != slow.FeatureService ||
			!slices.Equal(fast.features, slow.Features) || !slices.Equal(fast.keys, keyList) || !fast.plain {
			t.Fatalf("%q:\nfast %+v\njson %+v, keys %q", body, fast, slow, keyList)
		}
	})
}

// FuzzLookupEndpointDecoders compares whole answers: every body gets the
// same status and the same bytes from POST /v1/lookup with the fast
// decoder as with encoding/json alone (errors and their messages included,
// bodies over MaxBodyBytes too).
//
//	go test ./pipeline/lookup -run '^$' -fuzz FuzzLookupEndpointDecoders -fuzztime 60s
func FuzzLookupEndpointDecoders(f *testing.F) {
	for _, s := range decoderSeeds {
		f.Add(s)
	}
	f.Add(`{"entity":"user","keys":["` + strings.Repeat("k", 300) + `"],"features":["txn_count_7d"]}`)
	f.Add(`{"entity":"user","keys":["u1"],"features":["txn_count_7d"]}` + strings.Repeat(" ", 300))
	f.Add(`{x` + strings.Repeat(" ", 300))
	o := Options{MaxBodyBytes: 256, MaxKeys: 3}
	fast := newFixture(f, o, true)
	slow := newFixture(f, o, true)
	slow.svc.jsonOnly = true
	f.Fuzz(func(t *testing.T, body string) {
		got := fast.do(t, "POST", "/v1/lookup", body)
		want := slow.do(t, "POST", "/v1/lookup", body)
		if got.Code != want.Code || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Fatalf("%q:\nfast %d %s\njson %d %s", body, got.Code, got.Body, want.Code, want.Body)
		}
	})
}

// The fast decoder takes the common shapes (and nothing else, so that
// encoding/json gives every error).
func TestLookupFastDecoderShapes(t *testing.T) {
	for _, tc := range []struct {
		body string
		fast bool
	}{
		{decoderSeeds[0], true},
		{decoderSeeds[1], true},
		{decoderSeeds[2], true},
		{decoderSeeds[4], true},
		{`{"entity":"user","keys":["héllo"],"features":["txn_count_7d"]}`, true},
		{`{}`, true},
		{`{"entity":"user","keys":["a\u0062"],"features":["txn_count_7d"]}`, false},
		{`{"Entity":"user","keys":["u1"],"features":["txn_count_7d"]}`, false},
		{`{"entity":"user","entity":"user","keys":["u1"],"features":["txn_count_7d"]}`, false},
		{`{"entity":"user","keys":[{"user_id":"u1"}],"features":["txn_count_7d"]}`, false},
		{`{"entity":"user","keys":["bad` + "\xff" + `"],"features":["txn_count_7d"]}`, false},
		{`{"entity":"user","keys":["u1"],"features":["txn_count_7d"]} {}`, false},
		{`{"entity":null,"keys":["u1"],"features":["txn_count_7d"]}`, false},
		{``, false},
	} {
		if _, ok := parseLookupFast([]byte(tc.body), nil, nil); ok != tc.fast {
			t.Errorf("%q: fast %v, want %v", tc.body, ok, tc.fast)
		}
	}
}

// Bodies encoding/json accepts that the fast decoder leaves to it are
// still answered as before: field names match case-insensitively, the last
// of duplicate fields wins, escapes are decoded.
func TestLookupBodiesOffTheFastPath(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	want := fx.do(t, "POST", "/v1/lookup", `{"entity":"user","keys":["u1","ab"],"features":["txn_count_7d"]}`)
	if want.Code != 200 {
		t.Fatalf("%d %s", want.Code, want.Body)
	}
	for _, body := range []string{
		`{"Entity":"user","KEYS":["u1","ab"],"Features":["txn_count_7d"]}`,
		`{"entity":"shop","entity":"user","keys":["u1","ab"],"features":["txn_count_7d"]}`,
		`{"entity":"user","keys":["u\u0031",{"user_id":"ab"}],"features":["txn_count_7d"]}`,
	} {
		if got := fx.do(t, "POST", "/v1/lookup", body); got.Code != 200 || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Errorf("%s: %d %s, want %s", body, got.Code, got.Body, want.Body)
		}
	}
}

// Once the pools are warm, decoding a common body allocates one string
// (the body's text) whatever the number of keys and features.
func TestLookupDecoderAllocatesOnlyTheText(t *testing.T) {
	body := []byte(decoderSeeds[1])
	keys, features := make([]string, 0, 8), make([]string, 0, 8)
	var f lookupFields
	n := testing.AllocsPerRun(200, func() {
		var ok bool
		if f, ok = parseLookupFast(body, keys[:0], features[:0]); !ok {
			t.Fatal("not decoded")
		}
	})
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	if n != 1 {
		t.Fatalf("decoding allocated %v times, want 1", n)
	}
	if len(f.keys) != 4 || len(f.features) != 4 {
		t.Fatalf("decoded %+v", f)
	}
}

// reusableWriter is a ResponseWriter that allocates nothing once its
// header map exists.
type reusableWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *reusableWriter) Header() http.Header         { return w.h }
func (w *reusableWriter) WriteHeader(code int)        { w.status = code }
func (w *reusableWriter) Write(b []byte) (int, error) { return w.body.Write(b) }

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

// The whole POST /v1/lookup endpoint of a common request, from the mux to
// the written answer (net/http's own request parsing and connection aside),
// allocates twice: the body's MaxBytesReader and the body's text.
func TestLookupEndpointAllocations(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	body := decoderSeeds[1]
	rd := readCloser{strings.NewReader(body)}
	req := httptest.NewRequest("POST", "/v1/lookup", nil)
	w := &reusableWriter{h: http.Header{}}
	run := func() {
		rd.Reset(body)
		req.Body = rd
		w.status = 0
		w.body.Reset()
		clear(w.h)
		fx.h.ServeHTTP(w, req)
		if w.status != 200 {
			t.Fatalf("%d %s", w.status, w.body.String())
		}
	}
	run()
	want := fx.do(t, "POST", "/v1/lookup", body)
	if !bytes.Equal(w.body.Bytes(), want.Body.Bytes()) {
		t.Fatalf("answers differ:\n%s\n%s", w.body.Bytes(), want.Body.Bytes())
	}
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	if n := testing.AllocsPerRun(200, run); n > 2 {
		t.Fatalf("the endpoint allocated %v times per request, want at most 2", n)
	}
}

// Over a real connection every answer is framed with a Content-Length, not
// chunked: small ones by net/http, larger ones by writeAnswer.
func TestAnswerHasContentLength(t *testing.T) {
	fx := newFixture(t, Options{MaxKeys: 200}, true)
	srv := httptest.NewServer(fx.h)
	defer srv.Close()
	for _, n := range []int{1, 4, 40} {
		body := `{"entity":"user","keys":` + manyKeys(n) + `,"features":["txn_amount_avg","txn_count_7d"]}`
		resp, err := http.Post(srv.URL+"/v1/lookup", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(b)) || len(resp.TransferEncoding) > 0 {
			t.Fatalf("%d keys: status %d, Content-Length %d for %d bytes, Transfer-Encoding %v",
				n, resp.StatusCode, resp.ContentLength, len(b), resp.TransferEncoding)
		}
		if want := fx.do(t, "POST", "/v1/lookup", body); !bytes.Equal(b, want.Body.Bytes()) {
			t.Fatalf("%d keys: the wire answer differs from the recorded one", n)
		}
		if n == 40 && len(b) <= autoContentLength {
			t.Fatalf("40 keys gave only %d bytes: the explicit Content-Length is not exercised", len(b))
		}
	}
}

// A read error other than the body limit is not taken for the end of the
// body: the request fails as it did with encoding/json reading the body
// itself (a complete object, then the error: "unexpected data after the
// JSON object").
func TestLookupBodyReadError(t *testing.T) {
	fast := newFixture(t, Options{}, true)
	slow := newFixture(t, Options{}, true)
	slow.svc.jsonOnly = true
	var answers []string
	for _, fx := range []*fixture{fast, slow} {
		body := io.MultiReader(strings.NewReader(`{"entity":"user","keys":["u1"],"features":["txn_count_7d"]}`), errReader{errors.New("connection reset")})
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/lookup", body))
		if rec.Code != 400 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		answers = append(answers, rec.Body.String())
	}
	if answers[0] != answers[1] {
		t.Fatalf("fast %s, json %s", answers[0], answers[1])
	}
}

// BenchmarkBareHandler is the floor for BenchmarkLookupHandler in the same
// harness: the handler of `featurepipe load --baseline` (reads the body,
// answers a fixed small JSON) behind a ServeMux.
func BenchmarkBareHandler(b *testing.B) {
	fx := &fixture{}
	mux := http.NewServeMux()
	answer := []byte(`{"results":[]}`)
	mux.HandleFunc("POST /v1/lookup", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(answer)
	})
	fx.h = mux
	body := `{"entity":"user","keys":["u1"],"features":["txn_amount_avg","txn_count_7d"]}`
	b.ReportAllocs()
	for b.Loop() {
		if rec := fx.do(b, "POST", "/v1/lookup", body); rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body)
		}
	}
}

// BenchmarkLookupDecode is the request decoder alone on a common body:
// the fast path, and encoding/json as before it.
func BenchmarkLookupDecode(b *testing.B) {
	body := []byte(decoderSeeds[0])
	b.Run("fast", func(b *testing.B) {
		keys, features := make([]string, 0, 8), make([]string, 0, 8)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := parseLookupFast(body, keys[:0], features[:0]); !ok {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		info := &entityInfo{name: "user", keys: []string{"user_id"}}
		b.ReportAllocs()
		for b.Loop() {
			var v lookupBody
			if err := decodeBody(bytes.NewReader(body), &v, true); err != nil {
				b.Fatal(err)
			}
			if _, err := requestKeys(info, v.Keys); err != nil {
				b.Fatal(err)
			}
		}
	})
}
