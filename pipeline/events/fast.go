package events

import (
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/schemas"
)

// fastPlan is how Decode reads a record written with the source's own
// schema without goavro's native map (schemas.Projection): the slots of
// the projected fields by role. nil when the plan cannot (the schema has
// fields the projection does not decode, such as an enum or a nested
// record, a field is read two ways no one projection gives, or a where
// reads a field a projection cannot give its CEL value of).
type fastPlan struct {
	schema  *schemas.Schema // the writer schema it reads
	proj    *schemas.Projection
	key     []int   // Plan.KeyFields
	entity  []int   // Plan.EntityKeys
	rekeys  [][]int // per Plan.Rekeys, its entity's keys
	ts      int
	fields  []int                 // Plan.Fields
	buckets []int                 // Plan.BucketFields
	vars    []config.ProjectedVar // the fields the plan's wheres read
}

// fieldTarget is the projection target of a Plan.Fields slot read with
// encoding e from a field of type t: what its generic reading
// (schemas.Float, Int, String or Bool) accepts. 0 (no target: no fast
// path) for a combination a validated file does not have.
func fieldTarget(e Encoding, t aggregations.ValueType) schemas.Target {
	switch e {
	case EncodeNumber:
		return schemas.AsFloat
	case EncodeDistinct:
		switch t {
		case aggregations.TypeString:
			return schemas.AsString
		case aggregations.TypeLong:
			return schemas.AsInt
		}
	case EncodeExactLong:
		return schemas.AsInt
	case EncodeBool:
		return schemas.AsBool
	case EncodeString:
		return schemas.AsString
	}
	return 0
}

// bucketTarget is the projection target of a bucket field of type t: what
// bucketValue reads it with.
func bucketTarget(t aggregations.ValueType) schemas.Target {
	switch t {
	case aggregations.TypeLong:
		return schemas.AsInt
	case aggregations.TypeBool:
		return schemas.AsBool
	}
	return schemas.AsString
}

// compileFast sets p.fast when the plan allows it.
func (p *Plan) compileFast() {
	if p.Source == nil || p.Source.Schema == nil {
		return
	}
	p.fast = p.compileFastFor(p.Source.Schema)
}

// compileFastFor is the fast plan of records written with s: the source's
// schema, or a writer schema whose resolution to it is the identity for
// the fields the plan reads (schemas.Resolution.Identity), so that reading
// a field of s is reading the source's field. nil when the plan cannot. A
// field read several ways (an int as a where's CEL int and as a summed
// number) is projected once with the union of its targets.
func (p *Plan) compileFastFor(s *schemas.Schema) *fastPlan {
	var names []string
	var targets []schemas.Target
	slot := func(name string, t schemas.Target) int {
		if i := slices.Index(names, name); i >= 0 {
			targets[i] |= t
			return i
		}
		names, targets = append(names, name), append(targets, t)
		return len(names) - 1
	}
	slots := func(fields []string, t schemas.Target) []int {
		out := make([]int, len(fields))
		for i, f := range fields {
			out[i] = slot(f, t)
		}
		return out
	}
	f := &fastPlan{schema: s, key: slots(p.KeyFields, schemas.AsString), entity: slots(p.EntityKeys, schemas.AsString)}
	for _, r := range p.Rekeys {
		f.rekeys = append(f.rekeys, slots(r.Entity.Keys, schemas.AsString))
	}
	f.ts = slot(p.Source.EventTime, schemas.AsInt)
	for i, name := range p.Fields {
		t := fieldTarget(p.Encodings[i], p.types[i])
		if t == 0 {
			return nil
		}
		f.fields = append(f.fields, slot(name, t))
	}
	for i, name := range p.BucketFields {
		f.buckets = append(f.buckets, slot(name, bucketTarget(p.bucketTypes[i])))
	}
	for _, fp := range p.Features {
		if fp.Feature.Filter == nil {
			continue
		}
		for _, name := range fp.Feature.Filter.Fields {
			if slices.ContainsFunc(f.vars, func(v config.ProjectedVar) bool { return v.Name == name }) {
				continue
			}
			field, ok := s.Field(name)
			if !ok {
				return nil
			}
			t, ok := config.ProjectedTarget(field)
			if !ok {
				return nil
			}
			f.vars = append(f.vars, config.ProjectedVar{Name: name, Slot: slot(name, t), Target: t})
		}
	}
	var ok bool
	if f.proj, ok = s.Project(names, targets); !ok {
		return nil
	}
	return f
}

// decodeFast is Decode for a record written with f.schema (the plan's own
// schema, or a writer schema that resolves to it as the identity), through
// its projection, without goavro's native map. It
// answers only for a valid event, which it then decodes exactly as Decode's
// generic path would (the same key, time, Values, Strs, Buckets and where
// outcomes); false means "not answered": the record may be malformed or
// invalid (a null where a value is read, a non-finite number, a long
// beyond 2^53 kept exactly, an invalid or over-long kept string, a where
// that fails), and the generic path decodes it again to say why
// (rejections are rare, so they may cost twice). With check (Check) it makes
// the same checks but builds none of the event's strings.
func (d *Decoder) decodeFast(plan *Plan, f *fastPlan, key, body []byte, now int64, out *Event, check bool) bool {
	if n := f.proj.Slots(); cap(out.proj) < n {
		out.proj = make([]schemas.Projected, n)
	}
	vals := out.proj[:f.proj.Slots()]
	if !f.proj.Decode(body, vals) {
		return false
	}
	// The Kafka key must equal the key fields' entity key.
	if len(f.key) == 1 {
		k := vals[f.key[0]].Bytes()
		if len(k) == 0 || len(k) > d.maxKeyBytes || string(k) != string(key) {
			return false
		}
	} else {
		recordKey, ok := d.fastKey(vals, f.key, &out.keyVals)
		if !ok || string(key) != recordKey {
			return false
		}
	}
	entityKey := ""
	switch {
	case check:
		if plan.rekeyed() && !d.fastKeyOK(vals, f.entity) {
			return false
		}
	case plan.rekeyed():
		k, ok := d.fastKey(vals, f.entity, &out.keyVals)
		if !ok {
			return false
		}
		entityKey = k
	default:
		entityKey = string(key)
	}
	out.Rekeyed = out.Rekeyed[:0]
	for _, r := range f.rekeys {
		if check {
			if !d.fastKeyOK(vals, r) {
				return false
			}
			continue
		}
		k, ok := d.fastKey(vals, r, &out.keyVals)
		if !ok {
			return false
		}
		out.Rekeyed = append(out.Rekeyed, k)
	}
	ts := vals[f.ts].Int
	if ts < 0 || ts > now+d.maxFutureMS {
		return false
	}
	out.Values = out.Values[:0]
	clear(out.Strs)
	out.Strs = out.Strs[:0]
	if plan.strings && !check {
		if n := len(plan.Fields); cap(out.Strs) < n {
			out.Strs = make([]string, n)
		} else {
			out.Strs = out.Strs[:n]
		}
	}
	for i, s := range f.fields {
		v := &vals[s]
		var x float64
		switch plan.Encodings[i] {
		case EncodeNumber:
			if x = v.Float; math.IsNaN(x) || math.IsInf(x, 0) {
				return false
			}
		case EncodeDistinct:
			if plan.types[i] == aggregations.TypeString {
				x = hashFloat(xxhash.Sum64(v.Bytes()))
			} else {
				x = distinctLong(v.Int)
			}
		case EncodeExactLong:
			if v.Int < -exactLong || v.Int > exactLong {
				return false
			}
			x = float64(v.Int)
		case EncodeBool:
			if v.Bool {
				x = 1
			}
		case EncodeString:
			b := v.Bytes()
			if len(b) > MaxStringBytes || !utf8.Valid(b) {
				return false
			}
			if !check {
				out.Strs[i] = string(b)
			}
		}
		out.Values = append(out.Values, x)
	}
	clear(out.Buckets)
	out.Buckets = out.Buckets[:0]
	for i, s := range f.buckets {
		v := &vals[s]
		var b string
		switch plan.bucketTypes[i] {
		case aggregations.TypeLong:
			if check {
				continue
			}
			b = strconv.FormatInt(v.Int, 10)
		case aggregations.TypeBool:
			if check {
				continue
			}
			b = strconv.FormatBool(v.Bool)
		default: // a string key: too long or invalid UTF-8 is the generic path's invalid_string
			if k := v.Bytes(); len(k) > MaxStringBytes || !utf8.Valid(k) {
				return false
			}
			if check {
				continue
			}
			b = v.String()
		}
		out.Buckets = append(out.Buckets, b)
	}
	if plan.filters > 0 && !d.filterFast(plan, f, vals, out, check) {
		return false
	}
	out.Key, out.TS = entityKey, ts
	return true
}

// filterFast is filter over the projected record vals: false when a where
// fails (the generic path then rejects the record with the same error) or
// reads a field the projection lacks. With check it skips the wheres that
// cannot fail on a projected record (config.Filter.Total: the projection
// holds no null), whose outcome Check does not need.
func (d *Decoder) filterFast(plan *Plan, f *fastPlan, vals []schemas.Projected, out *Event, check bool) bool {
	in := &out.projFilter
	in.Vars, in.Vals, in.Schema, in.Missed = f.vars, vals, f.schema, false
	for i := range plan.Features {
		fp := &plan.Features[i]
		if !fp.Filtered() || check && fp.Feature.Filter.Total {
			continue
		}
		ok, err := fp.Feature.Filter.Match(in)
		if err != nil || in.Missed {
			return false
		}
		m := 0.0
		if ok {
			m = 1
		}
		out.Values = append(out.Values, m)
	}
	return true
}

// fastKeyOK is fastKey's checks alone.
func (d *Decoder) fastKeyOK(vals []schemas.Projected, slots []int) bool {
	for _, s := range slots {
		n := len(vals[s].Str)
		if n == 0 { // an empty string, or an integer field (formatted)
			n = len(vals[s].String())
		}
		if n == 0 || n > d.maxKeyBytes {
			return false
		}
	}
	return true
}

// fastKey is entityKey over projected values: false when a field is empty
// or too long (the generic path then rejects the record).
func (d *Decoder) fastKey(vals []schemas.Projected, slots []int, scratch *[]string) (string, bool) {
	*scratch = (*scratch)[:0]
	for _, s := range slots {
		v := vals[s].String()
		if v == "" || len(v) > d.maxKeyBytes {
			return "", false
		}
		*scratch = append(*scratch, v)
	}
	return keys.EntityKey(*scratch), true
}
