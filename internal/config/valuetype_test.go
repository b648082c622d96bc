package config

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/featurepipe/featurepipe/aggregations"
)

// TestFieldValueTypes: a feature's ValueType is its field's Avro type, and
// approx_distinct takes string, boolean, int and long fields besides
// doubles.
func TestFieldValueTypes(t *testing.T) {
	for _, tt := range []struct {
		source, aggregation, field string
		want                       aggregations.ValueType
	}{
		{"transactions", "sum", "amount", aggregations.TypeDouble},
		{"transactions", "approx_distinct", "amount", aggregations.TypeDouble},
		{"transactions", "approx_distinct", "merchant_id", aggregations.TypeString},
		{"transactions", "approx_distinct", "ts", aggregations.TypeLong},
		{"transactions", "max", "ts", aggregations.TypeLong},
		{"logins", "approx_distinct", "success", aggregations.TypeBool},
		{"logins", "approx_distinct", "country", aggregations.TypeString},
		{"logins", "last", "success", aggregations.TypeBool},
		{"logins", "first", "success", aggregations.TypeBool},
		{"transactions", "last", "ts", aggregations.TypeLong},
		{"transactions", "last", "merchant_id", aggregations.TypeString},
		{"transactions", "first", "merchant_id", aggregations.TypeString},
		{"logins", "last_k", "country", aggregations.TypeString},
		{"logins", "first_k", "country", aggregations.TypeString},
	} {
		doc := header + "features:\n" + strings.NewReplacer("source: transactions", "source: "+tt.source,
			"aggregation: avg", "aggregation: "+tt.aggregation, "field: amount", "field: "+tt.field).Replace(validFeature)
		if strings.HasSuffix(tt.aggregation, "_k") {
			doc = strings.Replace(doc, "    window: 7d\n", "    window: 7d\n    k: 3\n", 1)
		}
		f := mustParse(t, doc).Features[0]
		if f.ValueType != tt.want {
			t.Errorf("%s of %s.%s: value type %v, want %v", tt.aggregation, tt.source, tt.field, f.ValueType, tt.want)
		}
		// The tiles of a string feature keep its strings (and only its).
		str := tt.want == aggregations.TypeString && f.Aggregation.KeepsValues()
		if f.Window.Strings() != str || (f.OutputType() == aggregations.TypeString) != str {
			t.Errorf("%s of %s.%s: window strings %v, output type %v; want strings %v", tt.aggregation, tt.source, tt.field, f.Window.Strings(), f.OutputType(), str)
		}
	}
	count := mustParse(t, header+"features:\n"+strings.Replace(strings.Replace(validFeature, "aggregation: avg", "aggregation: count", 1), "    field: amount\n", "", 1)).Features[0]
	if count.ValueType != aggregations.TypeDouble {
		t.Errorf("count: value type %v, want double", count.ValueType)
	}
}

// TestListFieldIsRefused: an array field is refused by name, for every
// aggregation, approx_distinct included.
func TestListFieldIsRefused(t *testing.T) {
	fsys := fstest.MapFS{"tagged.avsc": &fstest.MapFile{Data: []byte(`{"type": "record", "name": "Tagged", "fields": [
		{"name": "user_id", "type": "string"},
		{"name": "tags", "type": {"type": "array", "items": "string"}},
		{"name": "ts", "type": "long"}]}`)}}
	for _, agg := range []string{"approx_distinct", "last", "sum"} {
		doc := "entities:\n  - name: user\n    key: user_id\nsources:\n  - name: tagged\n    topic: tagged\n    schema: tagged.avsc\n    event_time: ts\n" +
			"features:\n  - name: f\n    version: 1\n    entity: user\n    source: tagged\n    aggregation: " + agg + "\n    field: tags\n    window: 7d\n    owner: x\n    description: y\n"
		_, err := Parse("features.yaml", []byte(doc), fsys, ".")
		var e *Error
		if !errors.As(err, &e) || e.Field != "features[0].field" || !strings.Contains(e.Msg, `field "tags" is of type array: list values are not supported as a feature's field yet`) {
			t.Errorf("%s of an array field: %v; want the list refusal at features[0].field", agg, err)
		}
	}
}
