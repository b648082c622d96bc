package lookup

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// entityView is the decoded view value of one entity: every feature the
// feature log carries for it, per source partition, each with the time of
// its latest tile update.
//
// A feature has one series per source partition that published tiles of it
// (keys.TileRef.SourcePartition): each is the state of one partition's
// worker, replaced tile by tile by that worker only, and a read merges them
// (lookupView.read). Usually one: producers put an entity's events in one
// partition. Invariant: the entries of one feature are adjacent, in
// ascending partition order, so a read stops after them.
type entityView struct {
	ids     []string
	parts   []int32 // source partition of each entry
	updated []int64 // ms
	series  []aggregations.Series
}

func (e *entityView) reset() {
	e.ids = e.ids[:0]
	e.parts = e.parts[:0]
	e.updated = e.updated[:0]
	e.series = e.series[:0]
}

// grow makes room for n more entries without reallocating: a view about
// to be decoded (n from its encoding), so that its four slices do not grow
// one entry at a time (six reallocations each for 20 features).
func (e *entityView) grow(n int) {
	e.ids = slices.Grow(e.ids, n)
	e.parts = slices.Grow(e.parts, n)
	e.updated = slices.Grow(e.updated, n)
	e.series = slices.Grow(e.series, n)
}

// index returns the entry of feature id from source partition part, or -1.
func (e *entityView) index(id string, part int32) int {
	for i, x := range e.ids {
		if x == id && e.parts[i] == part {
			return i
		}
	}
	return -1
}

// add adds an empty entry for feature id from source partition part, which
// must not have one, where the invariant wants it: after the entries of id
// from lower partitions, at the end for a new id. It returns its index.
func (e *entityView) add(id string, part int32) int {
	pos, seen := len(e.ids), false
	for i, x := range e.ids {
		if x != id {
			if seen {
				break
			}
			continue
		}
		seen = true
		if e.parts[i] > part {
			pos = i
			break
		}
		pos = i + 1
	}
	n := e.appendEntry(id, part)
	if pos == n {
		return n
	}
	// Rotate the new entry from the end into pos.
	id0, part0, upd0, ser0 := e.ids[n], e.parts[n], e.updated[n], e.series[n]
	copy(e.ids[pos+1:], e.ids[pos:n])
	copy(e.parts[pos+1:], e.parts[pos:n])
	copy(e.updated[pos+1:], e.updated[pos:n])
	copy(e.series[pos+1:], e.series[pos:n])
	e.ids[pos], e.parts[pos], e.updated[pos], e.series[pos] = id0, part0, upd0, ser0
	return pos
}

// appendEntry appends an empty entry, keeping the capacity of a previous
// series in that slot, and returns its index. The caller keeps the
// invariant (decode appends in the encoded order, which has it).
func (e *entityView) appendEntry(id string, part int32) int {
	e.ids = append(e.ids, id)
	e.parts = append(e.parts, part)
	e.updated = append(e.updated, 0)
	if len(e.series) < cap(e.series) {
		e.series = e.series[:len(e.series)+1]
		e.series[len(e.series)-1] = aggregations.Series{Tiles: e.series[len(e.series)-1].Tiles[:0]}
	} else {
		e.series = append(e.series, aggregations.Series{})
	}
	return len(e.ids) - 1
}

// appendBytes is appendEntry for an id given as bytes: when e is reused
// and its previous decode had the same id at this position (the common
// case: every view of an entity type lists the same features), the old
// string is kept and nothing is allocated.
func (e *entityView) appendBytes(id []byte, part int32) int {
	if n := len(e.ids); n < cap(e.ids) {
		if old := e.ids[:n+1][n]; old == string(id) {
			return e.appendEntry(old, part)
		}
	}
	return e.appendEntry(string(id), part)
}

// encode appends e in the view layout: the one encoding of an entity's
// view, in the Pebble view and in the lookup cache alike, so that a cache
// miss caches the bytes it read and a merge (viewmerge.go) encodes an
// entity once for all the operands it folds in. Each series is
// length-prefixed, so that a lookup decodes only the features it asks for
// (see lookupView.parse).
//
// Layout (viewFormat 3): uvarint(n), n × (uvarint len, id, uvarint source
// partition, varint updated, uvarint len, series), entries of one id
// adjacent in ascending partition order. encode allocates nothing but dst's
// growth.
func (e *entityView) encode(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(e.ids)))
	for i, id := range e.ids {
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = binary.AppendUvarint(dst, uint64(e.parts[i]))
		dst = binary.AppendVarint(dst, e.updated[i])
		dst = appendSeriesPrefixed(dst, &e.series[i])
	}
	return dst
}

// appendSeriesPrefixed appends uvarint(len) and the encoding of s: it
// encodes s in place, then shifts it right by the width of its length (a
// memmove of the series bytes, no scratch buffer).
func appendSeriesPrefixed(dst []byte, s *aggregations.Series) []byte {
	at := len(dst)
	dst = aggregations.AppendSeries(dst, s)
	n := len(dst) - at
	var hdr [binary.MaxVarintLen64]byte
	w := binary.PutUvarint(hdr[:], uint64(n))
	dst = append(dst, hdr[:w]...)
	copy(dst[at+w:], dst[at:at+n])
	copy(dst[at:], hdr[:w])
	return dst
}

// readEntry reads one (id, partition, updated, series) entry of the view
// layout from the start of src, returning the bytes after it. id and series
// alias src.
func readEntry(src []byte) (id []byte, part int32, updated int64, series, rest []byte, err error) {
	l, w := binary.Uvarint(src)
	if w <= 0 || uint64(len(src)-w) < l {
		return nil, 0, 0, nil, nil, aggregations.ErrCorrupt
	}
	id, src = src[w:w+int(l)], src[w+int(l):]
	p, w := binary.Uvarint(src)
	if w <= 0 || p > math.MaxInt32 {
		return nil, 0, 0, nil, nil, aggregations.ErrCorrupt
	}
	src = src[w:]
	updated, w = binary.Varint(src)
	if w <= 0 {
		return nil, 0, 0, nil, nil, aggregations.ErrCorrupt
	}
	src = src[w:]
	l, w = binary.Uvarint(src)
	if w <= 0 || uint64(len(src)-w) < l {
		return nil, 0, 0, nil, nil, aggregations.ErrCorrupt
	}
	return id, int32(p), updated, src[w : w+int(l)], src[w+int(l):], nil
}

// minEntryLen is the fewest bytes an encoded view entry takes (id length
// and a byte of id, partition, updated, series length and a series of
// three bytes): decode sizes a view by the count it reads, but no larger
// than the bytes could hold.
const minEntryLen = 8

// decode reads bytes written by encode into e, decoding every series.
func (e *entityView) decode(src []byte) error {
	e.reset()
	n, w := binary.Uvarint(src)
	if w <= 0 {
		return aggregations.ErrCorrupt
	}
	src = src[w:]
	e.grow(int(min(n, uint64(len(src)/minEntryLen))))
	for j := uint64(0); j < n; j++ {
		id, part, u, series, rest, err := readEntry(src)
		if err != nil {
			return err
		}
		i := e.appendBytes(id, part)
		e.updated[i] = u
		left, err := aggregations.DecodeSeries(series, &e.series[i])
		if err != nil {
			return err
		}
		if len(left) != 0 {
			return fmt.Errorf("feature %s: %w: %d bytes after the series", id, aggregations.ErrCorrupt, len(left))
		}
		src = rest
	}
	if len(src) != 0 {
		return fmt.Errorf("%w: %d bytes after the view", aggregations.ErrCorrupt, len(src))
	}
	return nil
}

// absent is the cached value of an entity the feature log never mentioned.
var absent = []byte{}

// view parses the view of one entity into v, from the cache or, on a miss,
// from Pebble: the bytes read are cached as they are (one Get, one copy of
// the value, no decode and no re-encode). An entity the feature log never
// mentioned leaves v empty. v.kbuf is the key buffer.
func (s *Service) view(entity, key string, v *lookupView) error {
	v.kbuf = keys.View(v.kbuf[:0], entity, key)
	ent, found, gen := s.cache.entry(v.kbuf)
	_, _, err := s.parseView(entity, key, v, ent, found, gen)
	return err
}

// parseView parses into v the view of the entity whose view key is v.kbuf:
// ent's bytes when found, else the value read from Pebble, cached (ent,
// found and gen are what viewCache.entry returned). It returns the cache
// entry whose bytes v parsed (cached false: none holds them, the cache is
// disabled or a commit raced with the read).
func (s *Service) parseView(entity, key string, v *lookupView, ent cacheEntry, found bool, gen uint64) (_ cacheEntry, cached bool, _ error) {
	if !found {
		val, err := s.readView(v)
		if err != nil {
			return cacheEntry{}, false, fmt.Errorf("view of %s %q: %w", entity, key, err)
		}
		if ent, found = s.cache.put(v.kbuf, gen, val); !found {
			ent = cacheEntry{val: val}
		}
	}
	if len(ent.val) == 0 {
		v.reset()
		return ent, found, nil
	}
	if err := v.parse(ent.val); err != nil {
		return cacheEntry{}, false, fmt.Errorf("view of %s %q: %w", entity, key, err)
	}
	return ent, found, nil
}

// readView reads the value of the view key v.kbuf from Pebble, or absent.
// With the cache enabled the value is a new slice of its exact size, which
// the cache keeps; disabled, it is read into v.vbuf, reused by the next
// read (v aliases it until then).
func (s *Service) readView(v *lookupView) ([]byte, error) {
	var dst []byte
	if !s.cache.enabled() {
		dst = v.vbuf[:0]
	}
	val, found, err := s.o.Store.Get(dst, v.kbuf)
	if !s.cache.enabled() && cap(val) <= 1<<20 { // do not keep huge buffers
		v.vbuf = val[:0]
	}
	if err != nil || !found {
		return absent, err
	}
	return val, nil
}

// consume follows the feature log into the Pebble view until ctx ends. It
// first catches up with the end offsets (last stable offsets) seen at start
// with kafka.ReadRounds (applyLogRound: every partition of a fetch response
// together), which ends by read position (a compacted tail or a
// transaction marker at end-1 does not keep the replica unready), then
// follows the log from the positions that read reached.
func (s *Service) consume(ctx context.Context) error {
	topic := s.o.Config.Kafka.FeatureLogTopic
	admin, err := kafka.NewClient(kafka.ConnOf(s.o.Brokers, s.o.Config), s.o.ClientID+"-admin", s.log)
	if err != nil {
		return fmt.Errorf("lookup kafka client: %w", err)
	}
	defer admin.Close()
	if err := kafka.EnsureTopics(ctx, admin, s.o.Config); err != nil {
		return err
	}
	var ends map[int32]int64
	for {
		var rs kafka.Ranges
		rs, err = kafka.ToEnd(ctx, admin, topic)
		if err == nil && len(rs) == 0 {
			err = fmt.Errorf("feature log %s has no partitions yet", topic)
		}
		if err == nil || ctx.Err() != nil {
			ends = make(map[int32]int64, len(rs))
			for p, r := range rs {
				ends[p] = r.End
			}
			break
		}
		s.log.Warn("waiting for feature log", zap.Error(err))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if s.emptyView(topic, ends) {
		if err := s.coldStart(ctx, admin, ends); err != nil {
			// The feature log holds everything: replay it instead.
			s.log.Warn("cold start from snapshots failed; replaying the feature log", zap.Error(err))
		}
	}
	ranges := make(kafka.Ranges, len(ends))
	next := make(map[int32]int64, len(ends))
	for p, end := range ends {
		off, found, err := s.o.Store.GetOffset(keys.ViewLogOffset(topic, p))
		if err != nil {
			return err
		}
		if found {
			next[p] = off
		}
		ranges[p] = kafka.Range{From: off, End: max(off, end)} // From 0: the log start (ReadRounds moves past retention)
	}
	s.setCatchUp(ends, next)
	a := newLogApplier(s.cache.enabled())
	s.log.Info("catching up with the feature log", zap.String("topic", topic), zap.Int("partitions", len(ends)), zap.Any("end_offsets_at_start", ends))
	pos, err := kafka.ReadRounds(ctx, admin, topic, ranges, func(round []kafka.Part) error {
		return s.applyLogRound(a, topic, round, logBatchRecords)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("catch up with the feature log: %w", err)
	}
	// The read positions, past any marker or compacted tail: kept so that a
	// restart does not read them again, and the start of the follow.
	b := s.o.Store.NewBatch()
	for p, off := range pos {
		_ = b.Set(keys.ViewLogOffset(topic, p), keys.PutU64(off), nil)
	}
	if err := s.o.Store.CommitNoSync(b); err != nil {
		return fmt.Errorf("record feature-log positions: %w", err)
	}
	for p, off := range pos {
		s.advance(p, off)
	}
	// Settling runs in the background; it is stopped and waited for when
	// consume returns, before the caller closes the store.
	sctx, stop := context.WithCancel(ctx)
	st := &settler{}
	defer st.wg.Wait()
	defer stop()
	st.maybeStart(sctx, s, a.merges)
	// pos has every partition: consume waited for the topic's partitions.
	opts := append(kafka.FollowFrom(topic, pos, kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20), kgo.FetchMaxWait(100*time.Millisecond))
	cl, err := kafka.NewClient(kafka.ConnOf(s.o.Brokers, s.o.Config), s.o.ClientID, s.log, opts...)
	if err != nil {
		return fmt.Errorf("lookup kafka client: %w", err)
	}
	defer cl.Close()
	s.log.Info("following feature log", zap.String("topic", topic), zap.Any("from", pos))
	var parts []kafka.Part
	for {
		fetches := cl.PollRecords(ctx, logBatchRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) {
				return nil
			}
			s.log.Warn("feature log fetch error", zap.Int32("partition", fe.Partition), zap.Error(fe.Err))
		}
		// One batch for the whole poll: an entity's tiles are spread over
		// the feature log's partitions (the key names the tile), so a
		// batch per partition would encode and write its view once per
		// partition.
		parts = parts[:0]
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) > 0 {
				parts = append(parts, kafka.Part{Partition: fp.Partition, Records: fp.Records})
			}
		})
		if err := s.applyLogParts(a, topic, parts); err != nil {
			return fmt.Errorf("apply feature log to view: %w", err)
		}
		st.maybeStart(sctx, s, a.merges)
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 || fp.HighWatermark < 0 {
				return
			}
			last := fp.Records[len(fp.Records)-1].Offset + 1
			s.m.LogLag.WithLabelValues(strconv.Itoa(int(fp.Partition))).Set(float64(fp.HighWatermark - last))
		})
	}
}

// logApplier is the scratch of applyLog, reused across batches: the ops
// value (see viewmerge.go) of every entity the current batch changes.
type logApplier struct {
	// index maps the cache key (entity NUL key) of an entity the current
	// batch changed to its entry of ops.
	index map[string]int
	// ops are the changed entities' ops values, ops[:n] in use; their
	// buffers are reused by later batches.
	ops []entityOps
	n   int
	// published holds the new encodings of the changed entities the lookup
	// cache holds, for the cache: nil when the cache is disabled, left
	// empty while no lookup can run (Service.lookupsOff).
	published  map[string][]byte
	kbuf, vbuf []byte
	ckbuf      []byte // the cache key of the current record
	scratch    entityView
	// sourceTS are the Kafka timestamps (ms) of the batch's feature-tile
	// upserts, observed as end-to-end latency once the batch is visible.
	sourceTS []int64
	// merges counts the merge operands written (see settler).
	merges int64
}

// entityOps is one entity's ops value in a batch.
type entityOps struct {
	ck  string // entity NUL key
	ops []byte
}

func newLogApplier(cached bool) *logApplier {
	a := &logApplier{index: make(map[string]int)}
	if cached {
		a.published = make(map[string][]byte)
	}
	return a
}

// logBatchRecords is the most records the follow loop polls and applies
// as one batch, and about the most applyLogRound applies as one.
const logBatchRecords = 50_000

// applyLogRound applies one catch-up round (every partition of one fetch
// response, up to 8 MiB each) in batches of at most about maxBatch
// records, each with a like share of every partition's records. A worker's
// publication spreads an entity's tiles over the feature log's partitions
// (the key names the tile), and partitions fill at about the same pace, so
// its records mostly meet in one batch: the entity gets one merge operand
// per batch, where a batch per partition wrote one per partition (as the
// follow loop, which applies a whole poll as one batch).
func (s *Service) applyLogRound(a *logApplier, topic string, round []kafka.Part, maxBatch int) error {
	total := 0
	for _, part := range round {
		total += len(part.Records)
	}
	n := max(1, (total+maxBatch-1)/maxBatch)
	parts := make([]kafka.Part, 0, len(round))
	for k := range n {
		parts = parts[:0]
		for _, part := range round {
			from, to := len(part.Records)*k/n, len(part.Records)*(k+1)/n
			if to > from {
				parts = append(parts, kafka.Part{Partition: part.Partition, Records: part.Records[from:to]})
			}
		}
		if err := s.applyLogParts(a, topic, parts); err != nil {
			return err
		}
	}
	return nil
}

// applyLogParts applies the records of several partitions as one batch:
// every changed view (one merge operand per entity) and every partition's
// read offset in one Pebble batch. Records of one key are in one
// partition, so applying the partitions one after the other keeps each
// key's order. Cost per batch: no read of the view; one Merge per entity
// changed, of the entity's records as they came.
func (s *Service) applyLogParts(a *logApplier, topic string, parts []kafka.Part) error {
	n := 0
	for _, lp := range parts {
		n += len(lp.Records)
	}
	if n == 0 {
		return nil
	}
	clear(a.published)
	clear(a.index)
	a.n = 0
	a.sourceTS = a.sourceTS[:0]
	oldLayout := 0
	for _, lp := range parts {
		s.applyLogRecords(a, lp.Partition, lp.Records, &oldLayout)
	}
	if oldLayout > 0 {
		s.log.Warn("skipping feature-log records of the layout without source partition (written by an older featurepipe); "+
			"their tiles are published again under the new layout when the workers republish them",
			zap.Int("records", oldLayout))
	}
	return s.commitLogBatch(a, topic, parts)
}

// applyLogRecords adds one partition's records of a batch to the ops
// values of their entities (a.ops), skipping malformed ones.
func (s *Service) applyLogRecords(a *logApplier, p int32, recs []*kgo.Record, oldLayout *int) {
	for _, r := range recs {
		rec, err := featurelog.ParseRaw(r.Key, r.Value) // names alias r.Key
		if errors.Is(err, keys.ErrOldLayout) {
			*oldLayout++ // reported once per batch
			continue
		}
		if err != nil {
			s.log.Warn("skipping malformed feature-log record", zap.Int32("partition", p), zap.Int64("offset", r.Offset), zap.Error(err))
			continue
		}
		ref := rec.Ref
		a.ckbuf = append(append(append(a.ckbuf[:0], ref.Entity...), 0), ref.EntityKey...)
		i, ok := a.index[string(a.ckbuf)]
		if !ok {
			if a.n == len(a.ops) {
				a.ops = append(a.ops, entityOps{})
			}
			i = a.n
			a.n++
			a.ops[i].ck = string(a.ckbuf)
			a.ops[i].ops = append(a.ops[i].ops[:0], opsMagic...)
			a.index[a.ops[i].ck] = i
		}
		ts := r.Timestamp.UnixMilli()
		a.ops[i].ops = appendOp(a.ops[i].ops, r.Key, r.Value, ts)
		if !rec.Deleted && !keys.IsSeen(ref.FeatureID) {
			a.sourceTS = append(a.sourceTS, ts)
		}
	}
}

// commitLogBatch writes the ops values of the batch's entities (merges)
// and every partition's read offset (one past its last record) in one
// batch, commits it, and then makes the new views visible to lookups (the
// lookup cache) and the partitions' progress to readiness.
func (s *Service) commitLogBatch(a *logApplier, topic string, parts []kafka.Part) error {
	s.viewMu.Lock() // see settleViews
	defer s.viewMu.Unlock()
	changed := a.ops[:a.n]
	// In key order (an entity's view keys sort as its cache keys do):
	// Pebble's memtable inserts a batch in its order, and an insert just
	// after the previous one starts its skiplist search from there, not
	// from the top.
	slices.SortFunc(changed, func(x, y entityOps) int { return strings.Compare(x.ck, y.ck) })
	// While no lookup can run, the lookup cache is left alone: it is empty
	// (nothing was ever read), so there is nothing to invalidate or update.
	feedCache := a.published != nil && !s.lookupsOff()
	b := s.o.Store.NewBatch()
	for i := range changed {
		c := &changed[i]
		entity, key, _ := cutNUL(c.ck)
		a.kbuf = keys.View(a.kbuf[:0], entity, key)
		var old []byte
		if feedCache {
			// Lookups must not hit the old value once Pebble has the new
			// one: see viewCache.
			old = s.cache.invalidate(a.kbuf)
		}
		if old == nil {
			_ = b.Merge(a.kbuf, c.ops, nil)
			a.merges++
		} else {
			// A view the cache holds gets its new value: its cached
			// (committed) value with the batch's records applied, what
			// Pebble's merge would give. It is written whole (a Set, as
			// cheap as the operand now that it is encoded): the entities
			// lookups read (a busy user's) thus never pile up operands
			// that every read of theirs would merge again.
			v, err := a.applyTo(old, c.ops)
			if err != nil {
				b.Close()
				return fmt.Errorf("view of %s %q: %w", entity, key, err)
			}
			a.published[c.ck] = v
			_ = b.Set(a.kbuf, v, nil)
		}
	}
	n := 0
	for _, lp := range parts {
		if len(lp.Records) == 0 {
			continue
		}
		n += len(lp.Records)
		_ = b.Set(keys.ViewLogOffset(topic, lp.Partition), keys.PutU64(lp.Records[len(lp.Records)-1].Offset+1), nil)
	}
	if s.beforeCommit != nil {
		s.beforeCommit(b)
	}
	if err := s.o.Store.CommitNoSync(b); err != nil {
		return err
	}
	if feedCache {
		// The views the cache held get their new values; the others are
		// invalidated again: a lookup that missed after the first
		// invalidate and read Pebble before the commit may have put the
		// old value (under the generation the first one left).
		for i := range changed {
			c := &changed[i]
			entity, key, _ := cutNUL(c.ck)
			a.kbuf = keys.View(a.kbuf[:0], entity, key)
			if v, ok := a.published[c.ck]; ok {
				s.cache.publish(a.kbuf, v)
			} else {
				s.cache.invalidate(a.kbuf)
			}
		}
	}
	s.m.LogRecords.Add(float64(n))
	s.m.ViewWrites.Add(float64(len(changed)))
	s.observeEndToEnd(a.sourceTS)
	for _, lp := range parts {
		if len(lp.Records) > 0 {
			s.advance(lp.Partition, lp.Records[len(lp.Records)-1].Offset+1)
		}
	}
	return nil
}

// applyTo returns the encoding of the view encoded as old (empty: none)
// with the records of the ops value ops applied: a new slice of its exact
// size.
func (a *logApplier) applyTo(old, ops []byte) ([]byte, error) {
	e := &a.scratch
	if len(old) == 0 {
		e.reset()
	} else if err := e.decode(old); err != nil {
		return nil, err
	}
	if err := applyOps(e, ops); err != nil {
		return nil, err
	}
	a.vbuf = e.encode(a.vbuf[:0])
	return bytes.Clone(a.vbuf), nil
}

// observeEndToEnd observes, for each feature-tile upsert just made visible,
// now minus its feature-log record's timestamp: the worker sets it to the
// Kafka timestamp of the newest source record folded into the tile since
// its last publication (the publication time when none was: a republished
// or bootstrapped tile). Nothing is observed before the view is ready: a
// catching-up replica would measure its own backlog, not the pipeline.
func (s *Service) observeEndToEnd(sourceTS []int64) {
	if !s.ready.Load() || len(sourceTS) == 0 {
		return
	}
	now := time.Now().UnixMilli()
	for _, ts := range sourceTS {
		s.m.EndToEnd.Observe(float64(max(now-ts, 0)) / 1000)
	}
}

func cutNUL(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// emptyView reports whether the view has never read the feature log.
func (s *Service) emptyView(topic string, ends map[int32]int64) bool {
	for p := range ends {
		if _, found, err := s.o.Store.GetOffset(keys.ViewLogOffset(topic, p)); err != nil || found {
			return false
		}
	}
	return true
}

// setCatchUp records the end offsets the view must reach before it is ready.
func (s *Service) setCatchUp(ends, next map[int32]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behind = make(map[int32]int64)
	for p, end := range ends {
		if next[p] < end {
			s.behind[p] = end
		}
	}
	s.checkReadyLocked()
}

func (s *Service) advance(p int32, next int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if end, ok := s.behind[p]; ok && next >= end {
		delete(s.behind, p)
		s.checkReadyLocked()
	}
}

// lookupsOff reports whether no lookup can read the view before the
// goroutine applying the feature log calls advance again: the replica has
// never been ready (ready never goes back to false, so no lookup has ever
// read the view or filled the lookup cache) and the view is still catching
// up (readiness needs it to have caught up, and only advance, called by the
// applying goroutine after its commit, moves that).
func (s *Service) lookupsOff() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ready.Load() && len(s.behind) > 0
}

// registryCaughtUp is registry.Follow's report that the registry view
// holds every record the registry topic had at start.
func (s *Service) registryCaughtUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.regCaughtUp = true
	s.checkReadyLocked()
}

// checkReadyLocked makes the replica ready once both the view (feature log)
// and the registry view have caught up. s.mu must be held.
func (s *Service) checkReadyLocked() {
	if len(s.behind) == 0 && s.regCaughtUp && !s.ready.Load() {
		s.ready.Store(true)
		s.m.Ready.Set(1)
		s.log.Info("lookup view caught up with the feature log and the feature registry", zap.Duration("after", time.Since(s.started)))
	}
}
