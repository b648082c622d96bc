package lookup

import (
	"strconv"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/jsonenc"
)

// appendJSON appends the LookupResponse of a exactly as encoding/json's
// Encoder writes it (field order, sorted map keys, omitempty, float and
// string formatting, trailing newline), without reflection or a map per
// key. TestAnswerEncodingMatchesEncodingJSON holds it to that.
func (a *lookupAnswer) appendJSON(b []byte) []byte {
	b = append(b, `{"as_of":`...)
	b = appendTime(b, a.asOf)
	b = append(b, `,"results":[`...)
	n := len(a.feats)
	for i, key := range a.keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = jsonenc.AppendString(b, key)
		b = append(b, `,"features":{`...)
		for k, j := range a.order {
			if k > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendString(b, a.names[j])
			b = append(b, ':')
			b = a.vals[i*n+j].appendJSON(b)
		}
		b = append(b, "}}"...)
	}
	b = append(b, ']')
	if len(a.warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range a.warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendString(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

// appendJSON appends v as encoding/json writes the FeatureValue v.public().
func (v *value) appendJSON(b []byte) []byte {
	b = append(b, `{"value":`...)
	b = v.appendValue(b)
	b = append(b, `,"status":`...)
	b = jsonenc.AppendString(b, v.status)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(v.version), 10)
	if v.updated > 0 {
		b = append(b, `,"updated_at":`...)
		b = appendTime(b, time.UnixMilli(v.updated).UTC())
	}
	return append(b, '}')
}

// appendValue appends v's value alone, as appendJSON writes it under
// "value" (and appendBuckets for each bucket).
func (v *value) appendValue(b []byte) []byte {
	switch {
	case v.hasV && v.top != nil:
		b = appendTop(b, v.top, v.typ)
	case v.hasV && v.buckets != nil:
		b = appendBuckets(b, v.buckets)
	case v.hasV && v.strs != nil:
		b = appendStrings(b, v.strs)
	case v.hasV && v.typ == aggregations.TypeString:
		b = jsonenc.AppendString(b, v.str)
	case v.hasV && v.list != nil:
		b = appendList(b, v.list, v.typ)
	case v.hasV && v.typ == aggregations.TypeBool:
		b = strconv.AppendBool(b, v.v != 0)
	case v.hasV:
		b = jsonenc.AppendFloat(b, v.v)
	default:
		b = append(b, "null"...)
	}
	return b
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
