package feastrepo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/testkit"
)

// TestListFeaturesAreArrays: first_k and last_k features are Fields of type
// Array(Float64) (Feast's DOUBLE_LIST), imported from feast.types, next to
// the Float64 and Int64 fields of the same view.
func TestListFeaturesAreArrays(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: s, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: n, version: 1, entity: user, source: transactions, aggregation: count, window: 1d, owner: t, description: d}
  - {name: recent, version: 1, entity: user, source: transactions, aggregation: last_k, k: 5, field: amount, window: 30d, owner: t, description: newest five}
  - {name: earliest, version: 1, entity: user, source: transactions, aggregation: first_k, k: 3, field: amount, window: lifetime, owner: t, description: first three}
`, nil)
	dir := t.TempDir()
	if err := Write(dir, cfg, Options{URL: "http://127.0.0.1:8080", Flight: "127.0.0.1:8815"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, Definitions))
	if err != nil {
		t.Fatal(err)
	}
	defs := string(b)
	for _, want := range []string{
		"from feast.types import Array, Bool, Float64, Int64, String\n",
		`Field(name="s", dtype=Float64, description="d"),`,
		`Field(name="n", dtype=Int64, description="d"),`,
		`Field(name="recent", dtype=Array(Float64), description="newest five"),`,
		`Field(name="earliest", dtype=Array(Float64), description="first three"),`,
	} {
		if !strings.Contains(defs, want) {
			t.Errorf("%s lacks %q:\n%s", Definitions, want, defs)
		}
	}
}

// TestKeptTypesAreFeastTypes: last, first, first_k and last_k of a long
// field are Int64 and Array(Int64), of a boolean field Bool and
// Array(Bool), of a string field String and Array(String); approx_distinct
// of a string field stays Float64.
func TestKeptTypesAreFeastTypes(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: logins, topic: lg, schema: login.avsc, event_time: ts}
features:
  - {name: last_ts, version: 1, entity: user, source: logins, aggregation: last, field: ts, window: 1d, owner: t, description: d}
  - {name: first_ok, version: 1, entity: user, source: logins, aggregation: first, field: success, window: 1d, owner: t, description: d}
  - {name: ts3, version: 1, entity: user, source: logins, aggregation: last_k, k: 3, field: ts, window: 1d, owner: t, description: d}
  - {name: ok3, version: 1, entity: user, source: logins, aggregation: first_k, k: 3, field: success, window: 1d, owner: t, description: d}
  - {name: countries, version: 1, entity: user, source: logins, aggregation: approx_distinct, field: country, window: 1d, owner: t, description: d}
  - {name: last_country, version: 1, entity: user, source: logins, aggregation: last, field: country, window: 1d, owner: t, description: d}
  - {name: countries3, version: 1, entity: user, source: logins, aggregation: last_k, k: 3, field: country, window: 1d, owner: t, description: d}
`, nil)
	dir := t.TempDir()
	if err := Write(dir, cfg, Options{URL: "http://127.0.0.1:8080", Flight: "127.0.0.1:8815"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, Definitions))
	if err != nil {
		t.Fatal(err)
	}
	defs := string(b)
	for _, want := range []string{
		`Field(name="last_ts", dtype=Int64, description="d"),`,
		`Field(name="first_ok", dtype=Bool, description="d"),`,
		`Field(name="ts3", dtype=Array(Int64), description="d"),`,
		`Field(name="ok3", dtype=Array(Bool), description="d"),`,
		`Field(name="countries", dtype=Float64, description="d"),`,
		`Field(name="last_country", dtype=String, description="d"),`,
		`Field(name="countries3", dtype=Array(String), description="d"),`,
	} {
		if !strings.Contains(defs, want) {
			t.Errorf("%s lacks %q:\n%s", Definitions, want, defs)
		}
	}
}
