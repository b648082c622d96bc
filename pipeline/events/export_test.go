package events

// GenericPlan is p without its fast paths: Decode then always builds
// goavro's native record, whatever the writer schema.
func GenericPlan(p *Plan) *Plan {
	c := *p
	c.fast, c.generic = nil, true
	return &c
}

// DecodeFast is Decode's fast path alone: false when it does not answer
// (or the plan has none for the record's writer schema).
func DecodeFast(d *Decoder, p *Plan, key, value []byte, now int64, out *Event) bool {
	return d.tryFast(p, key, value, now, out, false)
}

// HasFast reports whether p has a fast path (a projection of its source's
// schema).
func HasFast(p *Plan) bool { return p.fast != nil }
