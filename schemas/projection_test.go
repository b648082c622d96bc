package schemas_test

import (
	"testing"

	"github.com/featurepipe/featurepipe/schemas"
)

// TestProjectRefuses: Project compiles only what it decodes exactly;
// everything else stays with DecodeBinary.
func TestProjectRefuses(t *testing.T) {
	const base = `{"type":"record","name":"R","fields":[{"name":"k","type":"string"},{"name":"n","type":"long"}`
	cases := []struct {
		name, schema string
		fields       []string
		targets      []schemas.Target
		ok           bool
	}{
		{"primitives", base + `]}`, []string{"k", "n"}, []schemas.Target{schemas.AsString, schemas.AsInt}, true},
		{"a long as a float and a string", base + `]}`, []string{"n"}, []schemas.Target{schemas.AsFloat}, true},
		{"an array field", base + `,{"name":"a","type":{"type":"array","items":"int"}}]}`, []string{"k"}, []schemas.Target{schemas.AsString}, false},
		{"an enum field", base + `,{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}]}`, []string{"k"}, []schemas.Target{schemas.AsString}, false},
		{"a three-branch union", base + `,{"name":"u","type":["null","int","string"]}]}`, []string{"k"}, []schemas.Target{schemas.AsString}, false},
		{"a decimal", base + `,{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":4}}]}`, []string{"k"}, []schemas.Target{schemas.AsString}, false},
		{"a missing field", base + `]}`, []string{"x"}, []schemas.Target{schemas.AsString}, false},
		{"a string as a number", base + `]}`, []string{"k"}, []schemas.Target{schemas.AsFloat}, false},
		{"a double as an integer", `{"type":"record","name":"R","fields":[{"name":"d","type":"double"}]}`, []string{"d"}, []schemas.Target{schemas.AsInt}, false},
		{"one field twice", base + `]}`, []string{"k", "k"}, []schemas.Target{schemas.AsString, schemas.AsString}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := schemas.Parse([]byte(c.schema))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := s.Project(c.fields, c.targets); ok != c.ok {
				t.Fatalf("Project ok = %v, want %v", ok, c.ok)
			}
		})
	}
}
