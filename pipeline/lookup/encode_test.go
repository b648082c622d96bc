package lookup

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
)

// The hand-written encoder must write byte for byte what encoding/json
// writes for the same LookupResponse: clients and golden files see no
// difference.
func TestAnswerEncodingMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "u1", `quo"te`, `back\slash`, "tab\tnew\nline\r", "ctl\x00\x01\x1f\b\f", "<html>&amp;",
		"héllo wörld", "日本語", "bad\xffutf8\xc3", "line\u2028sep\u2029", "emoji 🙂"}
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e-7, 1e-6, 123456789.125, 1e20, 1e21, -2.5e-10,
		math.MaxFloat64, math.SmallestNonzeroFloat64, 124.47999999999999}
	statuses := []string{StatusPresent, StatusEmptyWindow, StatusNotFound}
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	for n := range 300 {
		a := &lookupAnswer{asOf: time.UnixMilli(rng.Int64N(4e12)).Add(time.Duration(rng.IntN(1e6))).UTC()}
		nf := 1 + rng.IntN(4)
		for range nf {
			a.names = append(a.names, pick(strs)) // duplicates happen: a map keeps one
			a.feats = append(a.feats, pickedFeature{})
		}
		for range 1 + rng.IntN(3) {
			a.keys = append(a.keys, pick(strs))
			for range nf {
				v := value{status: statuses[rng.IntN(3)], version: rng.IntN(5)}
				if rng.IntN(3) > 0 {
					v.v, v.hasV = floats[rng.IntN(len(floats))], true
				}
				switch rng.IntN(8) { // a boolean or long feature's value or list
				case 0:
					v.typ, v.v = aggregations.TypeBool, float64(rng.IntN(2))
				case 1:
					v.typ, v.v = aggregations.TypeLong, float64(rng.Int64N(1<<53))
				case 2:
					v.typ = aggregations.TypeBool
					if v.hasV {
						v.list = []float64{1, 0, 1}
					}
				case 3: // a string feature (last, first)
					v.typ, v.str = aggregations.TypeString, pick(strs)
				case 4: // a string list feature (first_k, last_k)
					v.typ = aggregations.TypeString
					if v.hasV {
						v.strs = []string{pick(strs), pick(strs)}
					}
				case 5: // a top_k of a string field
					v.typ = aggregations.TypeString
					if v.hasV {
						v.top = []TopValue{{Str: pick(strs), Count: 3}, {Str: pick(strs), Count: 1}}
					}
				case 6: // a top_k of a number or boolean field (an empty one in the summary regime)
					v.typ = []aggregations.ValueType{aggregations.TypeDouble, aggregations.TypeBool, aggregations.TypeLong}[rng.IntN(3)]
					if v.hasV {
						v.top = []TopValue{}
						for i := range rng.IntN(3) {
							x := floats[rng.IntN(len(floats))]
							if v.typ != aggregations.TypeDouble {
								x = float64(i)
							}
							v.top = append(v.top, TopValue{Value: x, Count: int64(5 - i)})
						}
					}
				}
				if rng.IntN(2) == 0 {
					v.updated = rng.Int64N(4e12)
				}
				a.vals = append(a.vals, v)
			}
		}
		if rng.IntN(3) == 0 {
			a.warnings = []string{pick(strs), pick(strs)}
		}
		a.sortNames()
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(a.response()); err != nil {
			t.Fatal(err)
		}
		if got := a.appendJSON(nil); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("case %d:\n got %s\nwant %s", n, got, want.Bytes())
		}
	}
}

func BenchmarkLookupHandler(b *testing.B) {
	benchLookups(b, newFixture(b, Options{}, true))
}

// benchLookups sends one lookup of two features per iteration; cpu-ns/op
// is the process's CPU time per lookup.
func benchLookups(b *testing.B, fx *fixture) {
	body := `{"entity":"user","keys":["u1"],"features":["txn_amount_avg","txn_count_7d"]}`
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		if rec := fx.do(b, "POST", "/v1/lookup", body); rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkLookupHandlerLogged is BenchmarkLookupHandler with the lookup log
// on (every key, to an in-process kfake broker): cpu-ns/op is the process's
// CPU time per lookup, the broker storing the log included.
func BenchmarkLookupHandlerLogged(b *testing.B) {
	fx, _ := logFixture(b, 1)
	benchLookups(b, fx)
}
