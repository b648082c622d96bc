package keys

import (
	"slices"
	"testing"
)

func TestEntityKey(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"a single key is its value unchanged", []string{`u"1`}, `u"1`},
		{"a composite key is a JSON array in key order", []string{"u1", "m9"}, `["u1","m9"]`},
		{"order matters", []string{"m9", "u1"}, `["m9","u1"]`},
		{"separators inside values stay unambiguous", []string{`a","b`, "c"}, `["a\",\"b","c"]`},
		{"empty values are kept", []string{"", "x"}, `["","x"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EntityKey(tt.values); got != tt.want {
				t.Errorf("EntityKey(%q) = %s, want %s", tt.values, got, tt.want)
			}
			if got := string(AppendEntityKey([]byte("x"), tt.values)); got != "x"+tt.want {
				t.Errorf("AppendEntityKey = %s, want x%s", got, tt.want)
			}
			back, err := SplitEntityKey(tt.want, len(tt.values))
			if err != nil || !slices.Equal(back, tt.values) {
				t.Errorf("SplitEntityKey(%s) = %q, %v; want %q", tt.want, back, err, tt.values)
			}
		})
	}
	if EntityKey([]string{"a,b", "c"}) == EntityKey([]string{"a", "b,c"}) {
		t.Error("two different composite keys encode the same")
	}
	if _, err := SplitEntityKey(`["a"]`, 2); err == nil {
		t.Error("SplitEntityKey accepted a key of the wrong arity")
	}
}

func TestEntityKeyAllocations(t *testing.T) {
	single, pair := []string{"u1"}, []string{"user-042", "merchant-7"}
	if n := testing.AllocsPerRun(100, func() { _ = EntityKey(single) }); n != 0 {
		t.Errorf("EntityKey of a single key: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = EntityKey(pair) }); n != 1 {
		t.Errorf("EntityKey of a composite key: %v allocations, want 1", n)
	}
}
