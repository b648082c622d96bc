package lookuplog

import "testing"

func TestEntryRoundTrip(t *testing.T) {
	v := 12.5
	in := &Entry{Entity: "user", Key: "u1", At: 1700000000123, Features: map[string]*float64{"a@1": &v, "b@2": nil}}
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Entity != "user" || out.Key != "u1" || out.At != in.At || *out.Features["a@1"] != 12.5 || out.Features["b@2"] != nil {
		t.Fatalf("round trip: %+v", out)
	}
	if _, ok := out.Features["b@2"]; !ok {
		t.Fatal("a null value must stay present")
	}
}

func TestDecodeRejectsIncompleteEntries(t *testing.T) {
	for _, b := range []string{`{}`, `{"entity":"user"}`, `not json`} {
		if _, err := Decode([]byte(b)); err == nil {
			t.Fatalf("%s: want an error", b)
		}
	}
}
