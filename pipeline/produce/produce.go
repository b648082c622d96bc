// Package produce turns JSON lines into Avro events on a source topic, in
// the source's encoding (single-object, or Confluent's wire format with the
// schema registered in the schema registry), keyed by the entity key so that every event of an entity
// lands in one partition (and so with one worker).
package produce

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/schemaregistry"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/schemas"
)

// MaxLineBytes bounds one input line. Longer lines are reported invalid.
const MaxLineBytes = 1 << 20

// LineError is one rejected input line.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Stats summarise a Send.
type Stats struct {
	Lines   int // non-empty lines read
	Sent    int // records acknowledged by the broker
	Invalid int // lines rejected (see the LineErrors)
}

// Encoder validates and encodes events of one source. A record it returns
// is one every stream worker accepts: it is checked with the workers' own
// validation (package events, default Limits) against the clock of the
// call. Safe for concurrent use.
type Encoder struct {
	src  *config.Source
	keys []string // the source entity's key fields
	plan *events.Plan
	dec  *events.Decoder

	events sync.Pool // *events.Event: Record's scratch

	// flat: lines may take the direct JSON-to-Avro path (FromJSON), which
	// needs the key fields to be plain strings and the event time a plain
	// integer, so that a line it encodes has the key and time Record reads.
	flat      bool
	keyFields []int // positions of the key fields in the schema, when flat

	idMu sync.Mutex
	id   uint32 // the source schema's registry id (encoding confluent), once registered
	idOK bool
}

// NewEncoder returns the encoder of source name in cfg.
func NewEncoder(cfg *config.File, name string) (*Encoder, error) {
	src, ok := cfg.Source(name)
	if !ok {
		var names []string
		for _, s := range cfg.Sources {
			names = append(names, s.Name)
		}
		return nil, fmt.Errorf("unknown source %q in %s; sources: %v", name, cfg.Path, names)
	}
	if src.Entity == nil {
		return nil, fmt.Errorf("source %q feeds no feature, so it has no entity key to partition by", name)
	}
	plans, err := events.Plans(cfg)
	if err != nil {
		return nil, err
	}
	plan := plans[src.Topic]
	if plan == nil { // a source with an entity feeds a feature, so it has a plan
		return nil, fmt.Errorf("source %q has no event plan", name)
	}
	enc := &Encoder{src: src, keys: src.Entity.Keys, plan: plan, dec: events.NewDecoder(cfg, events.Limits{})}
	enc.flat, enc.keyFields = flatPath(src)
	enc.events.New = func() any { return new(events.Event) }
	return enc, nil
}

// flatPath reports whether src's lines may take the direct JSON-to-Avro
// path, and the schema positions of its key fields.
func flatPath(src *config.Source) (bool, []int) {
	pos := make(map[string]int, len(src.Schema.Fields))
	for i, f := range src.Schema.Fields {
		pos[f.Name] = i
	}
	plain := func(name string, types ...string) bool {
		i, ok := pos[name]
		if !ok {
			return false
		}
		f := src.Schema.Fields[i]
		return !f.Nullable && (f.LogicalType == "" || f.LogicalType == "timestamp-millis") && slices.Contains(types, f.Type)
	}
	if !plain(src.EventTime, "long", "int") {
		return false, nil
	}
	var keyFields []int
	for _, k := range src.Entity.Keys {
		if !plain(k, "string") {
			return false, nil
		}
		keyFields = append(keyFields, pos[k])
	}
	return true, keyFields
}

// Source is the source this encoder writes.
func (e *Encoder) Source() *config.Source { return e.src }

// Record encodes one native event into a record for the source topic, keyed
// by its entity key. It refuses an event the workers would dead-letter
// (an *events.Rejection: empty or over-long key, event time before 1970 or
// more than events.DefaultMaxFuture from now, non-finite value...): the
// encoded record is decoded and validated as a worker does, which costs one
// Avro decode per record.
func (e *Encoder) Record(native map[string]any) (*kgo.Record, error) {
	return e.recordAt(native, time.Now().UnixMilli())
}

// recordAt is Record checked against the clock now (epoch ms).
func (e *Encoder) recordAt(native map[string]any, now int64) (*kgo.Record, error) {
	vals := make([]string, len(e.keys))
	for i, k := range e.keys {
		v, err := schemas.String(native, k)
		if err != nil {
			return nil, fmt.Errorf("entity key: %w", err)
		}
		vals[i] = v
	}
	key := keys.EntityKey(vals)
	// The event time is read here only so that a missing or mistyped one is
	// named as such; goavro's encode error would not say "event time".
	if _, err := schemas.Int(native, e.src.EventTime); err != nil {
		return nil, fmt.Errorf("event time: %w", err)
	}
	var val []byte
	if e.src.Encoding == config.EncodingConfluent {
		id, err := e.SchemaID(context.Background())
		if err != nil {
			return nil, err
		}
		val, err = e.src.Schema.EncodeConfluent(make([]byte, 0, valueBytes), id, native)
		if err != nil {
			return nil, err
		}
	} else {
		var err error
		if val, err = e.src.Schema.Encode(make([]byte, 0, valueBytes), native); err != nil {
			return nil, err
		}
	}
	rec := &kgo.Record{Topic: e.src.Topic, Key: []byte(key), Value: val}
	ev := e.events.Get().(*events.Event) // its slices are reused
	defer e.events.Put(ev)
	if rej := e.dec.Check(e.plan, rec.Key, val, now, ev); rej != nil {
		return nil, rej
	}
	return rec, nil
}

// valueBytes is the capacity Record gives an encoded value to start with:
// enough for a typical event in one allocation.
const valueBytes = 128

// SchemaID returns the schema registry id of the source's schema, for a
// source with encoding confluent: the first call registers the schema under
// the topic's subject (TopicNameStrategy, "<topic>-value"), which returns
// the existing id when the subject already has it; later calls answer from
// memory. A failed call is retried by the next one. The registry's
// compatibility check applies: a schema it refuses is an error naming the
// subject.
func (e *Encoder) SchemaID(ctx context.Context) (uint32, error) {
	e.idMu.Lock()
	defer e.idMu.Unlock()
	if e.idOK {
		return e.id, nil
	}
	reg := e.dec.Registry()
	if reg == nil {
		return 0, fmt.Errorf("source %q: encoding confluent needs a schema registry client: %v", e.src.Name, e.dec.RegistryErr())
	}
	subject := schemaregistry.SubjectForTopic(e.src.Topic)
	id, err := reg.Register(ctx, subject, e.src.Schema)
	if err != nil {
		return 0, fmt.Errorf("register schema %s of source %q under subject %s: %w", e.src.SchemaPath, e.src.Name, subject, err)
	}
	e.id, e.idOK = id, true
	return id, nil
}

// ClientOpts are the producer options of `featurepipe produce` for enc's
// source (on top of kafka.BaseOpts): its topic as the default one and a
// linger of 5 ms, so that records accumulate into batches.
func ClientOpts(enc *Encoder) []kgo.Opt {
	return []kgo.Opt{kgo.DefaultProduceTopic(enc.Source().Topic), kgo.ProducerLinger(5 * time.Millisecond)}
}

// FromJSON encodes one JSON object line, as Record(Schema.FromJSON(line))
// would: the same record, the same validation, the same errors.
//
// The common line (a flat object the source schema's fields describe, keys
// of string fields) is written straight from the JSON to Avro
// (schemas.Schema.AppendFlatJSON), without the native map; every other
// line, and every line the fast path would refuse, goes through FromJSON
// and Record, which name the problem.
func (e *Encoder) FromJSON(line []byte) (*kgo.Record, error) {
	return e.fromJSONAt(line, time.Now().UnixMilli())
}

// fromJSONAt is FromJSON checked against the clock now (epoch ms): Send
// reads the clock once per chunk of lines. A clock a few milliseconds old
// only makes the future bound (now + events.DefaultMaxFuture) stricter
// than the workers', which decode later.
func (e *Encoder) fromJSONAt(line []byte, now int64) (*kgo.Record, error) {
	if e.flat {
		if rec, ok, err := e.fromFlatJSON(line, now); ok {
			return rec, err
		}
	}
	native, err := e.src.Schema.FromJSON(line)
	if err != nil {
		return nil, err
	}
	return e.recordAt(native, now)
}

// fromFlatJSON is FromJSON through schemas.Schema.AppendFlatJSON; ok false
// when that declines the line.
func (e *Encoder) fromFlatJSON(line []byte, now int64) (rec *kgo.Record, ok bool, err error) {
	var raw [][]byte
	var rawStack [16][]byte
	if n := len(e.src.Schema.Fields); n <= len(rawStack) {
		raw = rawStack[:n]
	} else {
		raw = make([][]byte, n)
	}
	val := make([]byte, 0, valueBytes)
	if e.src.Encoding == config.EncodingConfluent {
		id, err := e.SchemaID(context.Background())
		if err != nil {
			return nil, true, err
		}
		val = schemas.AppendConfluentHeader(val, id)
	} else {
		val = e.src.Schema.AppendSingleObjectHeader(val)
	}
	if val, ok = e.src.Schema.AppendFlatJSON(val, line, raw); !ok {
		return nil, false, nil
	}
	var key []byte
	if len(e.keyFields) == 1 {
		key = append([]byte(nil), raw[e.keyFields[0]]...)
	} else {
		vals := make([]string, len(e.keyFields))
		for i, f := range e.keyFields {
			vals[i] = string(raw[f])
		}
		key = []byte(keys.EntityKey(vals))
	}
	rec = &kgo.Record{Topic: e.src.Topic, Key: key, Value: val}
	ev := e.events.Get().(*events.Event) // its slices are reused
	defer e.events.Put(ev)
	if rej := e.dec.Check(e.plan, rec.Key, val, now, ev); rej != nil {
		return nil, true, rej
	}
	return rec, true, nil
}

// Send reads JSON lines from r and produces every valid one. Invalid lines
// are reported (with their 1-based line numbers, in order) and not sent;
// valid lines are sent regardless, including those after an invalid one.
// Blank lines are skipped and not counted. A line longer than MaxLineBytes
// (not counting its line ending) is reported invalid and skipped; at most
// MaxLineBytes+64 KiB of it is held in memory. progress, if not nil, is
// called after every 10,000 counted lines, valid or not, with the stats as
// of that line.
//
// Records are produced in input order. Lines are encoded and validated
// (FromJSON) by runtime.GOMAXPROCS(0) goroutines, in chunks of chunkLines
// lines; at most 4 chunks per goroutine are read ahead of the one being
// produced, which bounds the memory Send holds besides the client's buffer.
func Send(ctx context.Context, cl *kgo.Client, enc *Encoder, r io.Reader, progress func(Stats)) (Stats, []*LineError, error) {
	workers := runtime.GOMAXPROCS(0)
	work := make(chan *chunk, 4*workers)
	ordered := make(chan *chunk, 4*workers)
	var scanErr error
	go func() { // the reader: chunks of lines, in input order
		defer close(work)
		defer close(ordered)
		scanErr = readChunks(r, func(c *chunk) {
			c.done = make(chan struct{})
			ordered <- c
			work <- c
		})
	}()
	for range workers {
		go func() {
			for c := range work {
				c.encode(enc)
				close(c.done)
			}
		}()
	}

	var st Stats
	var bad []*LineError
	var sent atomic.Int64
	var mu sync.Mutex
	var firstErr error
	onAck := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
			return
		}
		sent.Add(1)
	}
	for c := range ordered {
		<-c.done
		for i := range c.lines {
			st.Lines++
			if c.errs[i] != nil {
				bad = append(bad, &LineError{Line: c.lines[i], Err: c.errs[i]})
			} else {
				cl.Produce(ctx, c.recs[i], onAck)
			}
			if progress != nil && st.Lines%10000 == 0 {
				st.Sent, st.Invalid = int(sent.Load()), len(bad)
				progress(st)
			}
		}
	}
	// ordered is closed: the reader has returned and scanErr is set.
	if err := cl.Flush(ctx); err != nil && firstErr == nil {
		firstErr = err
	}
	st.Sent = int(sent.Load())
	st.Invalid = len(bad)
	if scanErr != nil {
		return st, bad, fmt.Errorf("read input: %w", scanErr)
	}
	if firstErr != nil {
		return st, bad, fmt.Errorf("produce to %s: %w", enc.src.Topic, firstErr)
	}
	return st, bad, nil
}

// chunkLines is the number of counted lines Send encodes as one unit of
// work.
const chunkLines = 256

// chunk is a run of counted (non-blank) input lines and, once done is
// closed, their records or errors.
type chunk struct {
	text  []byte // the lines, one after the other
	ends  []int  // end of each line in text
	lines []int  // 1-based line number of each line
	long  []bool // the line was longer than MaxLineBytes
	recs  []*kgo.Record
	errs  []error
	done  chan struct{}
}

// encode fills c.recs and c.errs.
func (c *chunk) encode(enc *Encoder) {
	c.recs = make([]*kgo.Record, len(c.lines))
	c.errs = make([]error, len(c.lines))
	from := 0
	now := time.Now().UnixMilli() // one clock per chunk: see fromJSONAt
	for i, end := range c.ends {
		if c.long[i] {
			c.errs[i] = fmt.Errorf("line longer than %d bytes; skipped", MaxLineBytes)
		} else {
			c.recs[i], c.errs[i] = enc.fromJSONAt(c.text[from:end], now)
		}
		from = end
	}
	c.text = nil // the records hold their own bytes
}

// newChunk returns an empty chunk with room for chunkLines lines of
// textBytes bytes in all (the size of the previous chunk).
func newChunk(textBytes int) *chunk {
	return &chunk{
		text:  make([]byte, 0, textBytes),
		ends:  make([]int, 0, chunkLines),
		lines: make([]int, 0, chunkLines),
		long:  make([]bool, 0, chunkLines),
	}
}

// readChunks reads r line by line and passes emit the counted lines in
// chunks of up to chunkLines, in order. It returns the read error that
// ended the input, or nil at its end.
func readChunks(r io.Reader, emit func(*chunk)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	c := newChunk(0)
	for n := 1; ; n++ {
		var long bool
		var err error
		buf, long, err = readLine(br, buf)
		if err != nil {
			if len(c.lines) > 0 {
				emit(c)
			}
			if err == io.EOF {
				return nil
			}
			return err
		}
		if !long && len(trimSpace(buf)) == 0 {
			continue
		}
		if !long {
			c.text = append(c.text, buf...)
		}
		c.ends = append(c.ends, len(c.text))
		c.lines = append(c.lines, n)
		c.long = append(c.long, long)
		if len(c.lines) == chunkLines {
			size := len(c.text) // c belongs to the encoders once emitted
			emit(c)
			c = newChunk(size)
		}
	}
}

// readLine reads the next line of br into buf[:0] and returns it without its
// line ending ("\n" or "\r\n"). A line longer than MaxLineBytes is read to
// its end but not kept whole: long is true and line holds only its
// beginning. err is io.EOF only when no line is left; a last line without
// "\n" is returned as a line.
func readLine(br *bufio.Reader, buf []byte) (line []byte, long bool, err error) {
	buf = buf[:0]
	total := 0
	for {
		chunk, err := br.ReadSlice('\n')
		total += len(chunk)
		if len(buf) <= MaxLineBytes+1 { // enough to tell a long line, with "\r\n"
			buf = append(buf, chunk...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && total == 0:
			return buf, false, io.EOF
		case err != nil && err != io.EOF:
			return buf, false, err
		}
		if total > len(buf) {
			return buf, true, nil
		}
		buf = bytes.TrimSuffix(buf, []byte{'\n'})
		buf = bytes.TrimSuffix(buf, []byte{'\r'})
		return buf, len(buf) > MaxLineBytes, nil
	}
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
