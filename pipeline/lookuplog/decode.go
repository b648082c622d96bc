package lookuplog

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// Record is a lookup-log entry decoded for the followers that read every
// record of every replica (the web catalog's usage and served-value
// statistics): Entry's content in slices that a Decoder reuses from one
// record to the next, instead of the maps Decode builds per record.
//
// Invariants: each section's members are in strictly increasing id order
// (so each id once), as the lookup service writes them; a null value has
// OK false. A Record, its slices and its Entry are valid until the next
// Decode into it: a reader that keeps anything copies it (the strings are
// immutable and may be kept).
type Record struct {
	Entity, Key string
	At          int64 // epoch ms
	// Consumer, Service and Request are Entry's (empty when absent).
	Consumer, Service, Request string
	Features                   []Feature
	Lists                      []List
	Strings                    []String
	StringLists                []StringList
	// Entry is the record as encoding/json decoded it, set when the record
	// has anything the hand-written path does not read (an escaped string,
	// another member order, a section it does not know such as "buckets",
	// "bucket_strings", "tops" or the bucketed lists and tops); nil otherwise. The slices above are
	// then filled from it, and the sections they do not hold are only in
	// Entry.
	Entry *Entry

	hasLists, hasStrings, hasStringLists bool // the section was present (possibly empty)
	floats                               []float64
	strs                                 []string
}

// FeatureIDs calls f with the id of every feature r served, whatever
// section holds it: the number, list, string and string-list sections,
// then (when Entry is set) the bucketed maps and tops only Entry holds.
// Each feature once: the lookup service logs a feature in one section.
func (r *Record) FeatureIDs(f func(id string)) {
	for i := range r.Features {
		f(r.Features[i].ID)
	}
	for i := range r.Lists {
		f(r.Lists[i].ID)
	}
	for i := range r.Strings {
		f(r.Strings[i].ID)
	}
	for i := range r.StringLists {
		f(r.StringLists[i].ID)
	}
	if r.Entry != nil {
		r.Entry.mapSectionIDs(f)
	}
}

// Feature is one number feature served: Value, or a null when OK is false.
type Feature struct {
	ID    string
	Value float64
	OK    bool
}

// List is one list feature served (first_k, last_k): Values, or a null
// when OK is false.
type List struct {
	ID     string
	Values []float64
	OK     bool
}

// String is one string feature served (last, first of a string field).
type String struct {
	ID, Value string
	OK        bool
}

// StringList is one string list feature served (first_k, last_k of a
// string field).
type StringList struct {
	ID     string
	Values []string
	OK     bool
}

// maxInterned bounds the names (feature ids, entities, consumers,
// services) a Decoder keeps to return without allocating: about 4,096
// strings of a few dozen bytes.
const maxInterned = 4096

// Decoder decodes lookup-log records into a Record it reuses: records as
// the Append functions write them are read by hand, without allocating
// beyond the key, the request id, string values and names it has not seen
// before (up to maxInterned names are kept); anything else is decoded by
// encoding/json (Record.Entry), with the same content. Not safe for
// concurrent use.
type Decoder struct {
	names map[string]string
	p     parser // here rather than on the stack: the section table's calls would move it to the heap
}

// Decode decodes the entry b (a line of a record value, see Entries) into
// r, reusing r's slices. It fails, as Decode does, on input that is not a
// lookup-log entry.
func (d *Decoder) Decode(b []byte, r *Record) error {
	if d.names == nil {
		d.names = map[string]string{}
	}
	r.reset()
	d.p = parser{b: b, names: d.names}
	ok := d.p.record(r)
	d.p.b = nil
	if !ok {
		r.reset()
		e := &Entry{}
		if err := json.Unmarshal(b, e); err != nil {
			return fmt.Errorf("decode lookup log entry: %w", err)
		}
		r.SetEntry(e)
	}
	if r.Entity == "" || r.At == 0 {
		return fmt.Errorf("decode lookup log entry: missing entity or time")
	}
	return nil
}

func (r *Record) reset() {
	*r = Record{Features: r.Features[:0], Lists: r.Lists[:0], Strings: r.Strings[:0], StringLists: r.StringLists[:0],
		floats: r.floats[:0], strs: r.strs[:0]}
}

// SetEntry makes r hold e: its fields, its sections in id order, and e
// itself as r.Entry (for the sections a Record has no slice of).
func (r *Record) SetEntry(e *Entry) {
	r.reset()
	r.Entity, r.Key, r.At, r.Consumer, r.Service, r.Request = e.Entity, e.Key, e.At, e.Consumer, e.Service, e.Request
	r.Entry = e
	for _, id := range slices.Sorted(maps.Keys(e.Features)) {
		f := Feature{ID: id}
		if v := e.Features[id]; v != nil {
			f.Value, f.OK = *v, true
		}
		r.Features = append(r.Features, f)
	}
	r.hasLists, r.hasStrings, r.hasStringLists = e.Lists != nil, e.Strings != nil, e.StringLists != nil
	for _, id := range slices.Sorted(maps.Keys(e.Lists)) {
		l := e.Lists[id]
		r.Lists = append(r.Lists, List{ID: id, Values: l, OK: l != nil})
	}
	for _, id := range slices.Sorted(maps.Keys(e.Strings)) {
		s := String{ID: id}
		if v := e.Strings[id]; v != nil {
			s.Value, s.OK = *v, true
		}
		r.Strings = append(r.Strings, s)
	}
	for _, id := range slices.Sorted(maps.Keys(e.StringLists)) {
		l := e.StringLists[id]
		r.StringLists = append(r.StringLists, StringList{ID: id, Values: l, OK: l != nil})
	}
}

// entry returns r as an Entry: r.Entry if set, else one built from the
// sections (what encoding/json gives for the same record).
func (r *Record) entry() *Entry {
	if r.Entry != nil {
		return r.Entry
	}
	e := &Entry{Entity: r.Entity, Key: r.Key, At: r.At, Consumer: r.Consumer, Service: r.Service, Request: r.Request,
		Features: make(map[string]*float64, len(r.Features))}
	vals := make([]float64, len(r.Features)) // one allocation for the values
	for i, f := range r.Features {
		e.Features[f.ID] = nil
		if f.OK {
			vals[i] = f.Value
			e.Features[f.ID] = &vals[i]
		}
	}
	if r.hasLists {
		e.Lists = make(map[string][]float64, len(r.Lists))
		for _, l := range r.Lists {
			e.Lists[l.ID] = nil
			if l.OK {
				e.Lists[l.ID] = append([]float64{}, l.Values...)
			}
		}
	}
	if r.hasStrings {
		e.Strings = make(map[string]*string, len(r.Strings))
		for _, s := range r.Strings {
			e.Strings[s.ID] = nil
			if s.OK {
				v := s.Value
				e.Strings[s.ID] = &v
			}
		}
	}
	if r.hasStringLists {
		e.StringLists = make(map[string][]string, len(r.StringLists))
		for _, l := range r.StringLists {
			e.StringLists[l.ID] = nil
			if l.OK {
				e.StringLists[l.ID] = append([]string{}, l.Values...)
			}
		}
	}
	return e
}

// decodeFast decodes b if it is a record value exactly as the Append
// functions write it with the sections the parser knows (recordSections),
// in their member order, strings without escapes, ids in increasing order,
// nothing after the object, with the values encoding/json would give; ok is
// false for anything else, which Decode then leaves to encoding/json.
// FuzzDecodeFast holds it to encoding/json.
func decodeFast(b []byte) (e *Entry, ok bool) {
	d := decoders.Get().(*pooledDecoder)
	defer decoders.Put(d)
	if d.names == nil {
		d.names = map[string]string{}
	}
	d.r.reset()
	d.p = parser{b: b, names: d.names}
	ok = d.p.record(&d.r)
	d.p.b = nil
	if !ok {
		return nil, false
	}
	return d.r.entry(), true
}

// pooledDecoder is the Decoder and Record behind Decode.
type pooledDecoder struct {
	Decoder
	r Record
}

var decoders = sync.Pool{New: func() any { return new(pooledDecoder) }}

// recordSections are the sections after "features" that the hand-written
// path reads, in the order the lookup service writes them. A record with
// any other section (or these in another order) is decoded by
// encoding/json: a new section needs an entry here only to be fast.
var recordSections = []struct {
	member string // `,"name":{`
	parse  func(p *parser, r *Record) bool
}{
	{`,"lists":{`, (*parser).lists},
	{`,"strings":{`, (*parser).strs},
	{`,"string_lists":{`, (*parser).stringLists},
}

// record parses a whole record value into r (reset).
func (p *parser) record(r *Record) bool {
	var ok bool
	if !p.lit(`{"entity":`) {
		return false
	}
	if r.Entity, ok = p.name(); !ok || !p.lit(`,"key":`) {
		return false
	}
	if r.Key, ok = p.str(); !ok || !p.lit(`,"at":`) {
		return false
	}
	if r.At, ok = p.int(); !ok {
		return false
	}
	if p.lit(`,"consumer":`) {
		if r.Consumer, ok = p.name(); !ok {
			return false
		}
	}
	if p.lit(`,"service":`) {
		if r.Service, ok = p.name(); !ok {
			return false
		}
	}
	if p.lit(`,"request":`) {
		if r.Request, ok = p.str(); !ok {
			return false
		}
	}
	if !p.lit(`,"features":{`) || !p.features(r) {
		return false
	}
	for _, s := range recordSections {
		if p.lit(s.member) && !s.parse(p, r) {
			return false
		}
	}
	return p.lit("}") && p.i == len(p.b)
}

// members parses the members of a section's object after its '{' up to
// and including its '}': for each, the id (in increasing order, after the
// previous one) and ':', then value parses the value.
func (p *parser) members(value func(id string) bool) bool {
	prev := ""
	for n := 0; !p.lit("}"); n++ {
		if n > 0 && !p.lit(",") {
			return false
		}
		id, ok := p.name()
		if !ok || (n > 0 && id <= prev) || !p.lit(":") || !value(id) {
			return false
		}
		prev = id
	}
	return true
}

func (p *parser) features(r *Record) bool {
	return p.members(func(id string) bool {
		f := Feature{ID: id}
		if !p.lit("null") {
			if f.Value, f.OK = p.float(); !f.OK {
				return false
			}
		}
		r.Features = append(r.Features, f)
		return true
	})
}

func (p *parser) lists(r *Record) bool {
	r.hasLists = true
	return p.members(func(id string) bool {
		l := List{ID: id}
		switch {
		case p.lit("null"):
		case p.lit("["):
			l.OK = true
			start := len(r.floats)
			for n := 0; !p.lit("]"); n++ {
				if n > 0 && !p.lit(",") {
					return false
				}
				x, ok := p.float()
				if !ok {
					return false
				}
				r.floats = append(r.floats, x)
			}
			l.Values = r.floats[start:len(r.floats):len(r.floats)]
		default:
			return false
		}
		r.Lists = append(r.Lists, l)
		return true
	})
}

func (p *parser) strs(r *Record) bool {
	r.hasStrings = true
	return p.members(func(id string) bool {
		s := String{ID: id}
		if !p.lit("null") {
			if s.Value, s.OK = p.str(); !s.OK {
				return false
			}
		}
		r.Strings = append(r.Strings, s)
		return true
	})
}

func (p *parser) stringLists(r *Record) bool {
	r.hasStringLists = true
	return p.members(func(id string) bool {
		l := StringList{ID: id}
		switch {
		case p.lit("null"):
		case p.lit("["):
			l.OK = true
			start := len(r.strs)
			for n := 0; !p.lit("]"); n++ {
				if n > 0 && !p.lit(",") {
					return false
				}
				x, ok := p.str()
				if !ok {
					return false
				}
				r.strs = append(r.strs, x)
			}
			l.Values = r.strs[start:len(r.strs):len(r.strs)]
		default:
			return false
		}
		r.StringLists = append(r.StringLists, l)
		return true
	})
}

type parser struct {
	b []byte
	i int
	// names interns the strings name returns (nil: none).
	names map[string]string
}

// lit consumes s if the input continues with it.
func (p *parser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// str consumes a JSON string that needs no unescaping (no backslash, no
// control character, valid UTF-8) and returns its content.
func (p *parser) str() (string, bool) {
	v, ok := p.strBytes()
	return string(v), ok
}

// name is str for the strings that repeat from record to record (ids,
// entities, consumers, services): interned in p.names, up to maxInterned.
func (p *parser) name() (string, bool) {
	v, ok := p.strBytes()
	if !ok || p.names == nil {
		return string(v), ok
	}
	if s, found := p.names[string(v)]; found {
		return s, true
	}
	s := string(v)
	if len(p.names) < maxInterned {
		p.names[s] = s
	}
	return s, true
}

func (p *parser) strBytes() ([]byte, bool) {
	if p.i == len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	ascii := true
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			v := p.b[p.i+1 : j]
			if !ascii && !utf8.Valid(v) {
				return nil, false
			}
			p.i = j + 1
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// number consumes a JSON number, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?,
// and returns its text and whether it is an integer (no fraction, no
// exponent).
func (p *parser) number() (text []byte, integer, ok bool) {
	start, i, b := p.i, p.i, p.b
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return nil, false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return nil, false, false
		}
		integer = false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return nil, false, false
		}
		integer = false
	}
	p.i = i
	return b[start:i], integer, true
}

// int consumes a JSON integer that fits an int64 (encoding/json's rule for
// an int64 field).
func (p *parser) int() (int64, bool) {
	text, integer, ok := p.number()
	if !ok || !integer {
		return 0, false
	}
	n, err := strconv.ParseInt(string(text), 10, 64)
	return n, err == nil
}

// float consumes a JSON number that is a finite float64 (encoding/json's
// rule for a float64), with the value encoding/json gives (ParseFloat's,
// correctly rounded). A decimal without an exponent whose digits fit 2^53
// and whose fraction has at most 22 digits (what the lookup service writes
// for most values) is the quotient of two exactly represented float64s,
// which IEEE division rounds correctly: Clinger's fast path, computed here
// while scanning the digits; anything else goes to strconv.ParseFloat.
func (p *parser) float() (float64, bool) {
	if x, ok := p.simpleFloat(); ok {
		return x, true
	}
	text, _, ok := p.number()
	if !ok {
		return 0, false
	}
	x, err := strconv.ParseFloat(string(text), 64)
	return x, err == nil
}

// pow10 are the powers of ten a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// simpleFloat consumes a number -?(0|[1-9][0-9]*)(\.[0-9]+)? whose digits,
// read as an integer, are at most 2^53 (so at most 22 after the point), not
// followed by an exponent, and returns its value (see float); ok false
// consumes nothing.
func (p *parser) simpleFloat() (float64, bool) {
	b, i := p.b, p.i
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	var m uint64
	digits, frac := 0, -1 // frac: digits after the point, -1 before it
	start := i
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			if digits == 1 && m == 0 && frac < 0 { // a leading zero: "01"
				return 0, false
			}
			m = m*10 + uint64(c-'0')
			digits++
			if frac >= 0 {
				frac++
			}
		case c == '.' && frac < 0 && digits > 0:
			frac = 0
		default:
			goto end
		}
		if digits > 19 { // m would overflow
			return 0, false
		}
	}
end:
	if digits == 0 || frac == 0 || i == start || m > 1<<53 || (i < len(b) && (b[i] == 'e' || b[i] == 'E' || b[i] == '.')) {
		return 0, false
	}
	x := float64(m) // exact: m <= 2^53
	if frac > 0 {
		x /= pow10[frac]
	}
	if neg {
		x = -x
	}
	p.i = i
	return x, true
}
