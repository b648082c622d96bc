package jsonenc

import (
	"encoding/json"
	"math"
	"testing"
)

func FuzzAppendStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", `quo"te\`, "<a&b>", "\x00\x1f\t\n\r\b\f", "\xff\xfe", "\u2028\u2029", "é日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json: %s", s, got, want)
		}
	})
}

func FuzzAppendFloatMatchesEncodingJSON(f *testing.F) {
	for _, x := range []float64{0, -0.0, 1, -1.5, 1e-7, 1e-6, 123456789, 1e20, 1e21, 1.5e300, 5e-324, math.MaxFloat64} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x float64) {
		got := string(AppendFloat(nil, x))
		if math.IsNaN(x) || math.IsInf(x, 0) {
			if got != "null" {
				t.Fatalf("AppendFloat(%v) = %s, want null", x, got)
			}
			return
		}
		want, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Fatalf("AppendFloat(%v) = %s, encoding/json: %s", x, got, want)
		}
	})
}

func TestAppendDoesNotAllocateIntoRoom(t *testing.T) {
	b := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { b = AppendFloat(AppendString(b[:0], "key<1>"), 12.5) }); n != 0 {
		t.Fatalf("%v allocations with room in the buffer, want 0", n)
	}
}
