package events

// GenericPlan is p without its fast path: Decode then always builds
// goavro's native record.
func GenericPlan(p *Plan) *Plan {
	c := *p
	c.fast = nil
	return &c
}

// DecodeFast is Decode's fast path alone: false when it does not answer
// (or the plan has none).
func DecodeFast(d *Decoder, p *Plan, key, value []byte, now int64, out *Event) bool {
	if p.fast == nil {
		return false
	}
	w, body, ok := d.schemas.Split(value)
	return ok && w == p.Source.Schema && d.decodeFast(p, key, body, now, out, false)
}

// HasFast reports whether p has a fast path (a projection of its source's
// schema).
func HasFast(p *Plan) bool { return p.fast != nil }
