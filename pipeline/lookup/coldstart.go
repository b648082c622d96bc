package lookup

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/entity"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/state"
)

// coldStart fills an empty view from the newest snapshots that together
// cover every source partition (opened by snapshot.Store.OpenNewest: one
// download and checksum of each file; merged and ingested, see
// ingestSnapshots), and records per feature-log partition the
// offset to continue from: the smallest offset any chosen snapshot
// corresponds to (0 where one of them has none), so that nothing published
// after any of the snapshots is missed; replaying a little more is harmless
// because feature-log records are absolute tile values. Corrupt snapshots
// are reported and skipped in favour of older ones. It does nothing, and
// the whole log is replayed, when no snapshot set covers every partition.
func (s *Service) coldStart(ctx context.Context, admin *kgo.Client, logPartitions map[int32]int64) error {
	if s.o.Snapshots == nil {
		return nil
	}
	t0 := time.Now()
	var want []snapshot.TopicPartition
	for _, src := range s.o.Config.Sources {
		if len(src.Features) == 0 {
			continue
		}
		ends, err := kafka.EndOffsets(ctx, admin, src.Topic)
		if err != nil {
			return err
		}
		for p := range ends {
			want = append(want, snapshot.TopicPartition{Topic: src.Topic, Partition: p})
		}
	}
	opened, problems, err := s.o.Snapshots.OpenNewest(ctx, want, nil)
	if err != nil {
		return fmt.Errorf("choose snapshots: %w", err)
	}
	defer func() {
		for _, o := range opened {
			o.Reader.Close()
		}
	}()
	for _, p := range problems {
		s.log.Warn("corrupt or partial snapshot skipped", zap.Error(p))
	}
	if len(opened) < len(want) {
		s.log.Info("no snapshots cover every source partition; replaying the whole feature log",
			zap.Int("covered", len(opened)), zap.Int("partitions", len(want)))
		return nil
	}
	start := map[int32]int64{}
	for p := range logPartitions {
		start[p] = -1
	}
	ids := map[string]bool{}
	byEntity := map[string][]*snapshotInput{} // the files to merge, by entity
	for _, o := range opened {
		c := o.Choice
		src, ok := s.o.Config.SourceByTopic(c.Source.Topic)
		if !ok || src.Entity == nil {
			continue
		}
		ids[c.Manifest.ID] = true
		byEntity[src.Entity.Name] = append(byEntity[src.Entity.Name], &snapshotInput{choice: c, updated: c.Manifest.CreatedAt.UnixMilli(), r: o.Reader})
		have := map[int32]int64{}
		for _, lp := range c.Manifest.FeatureLog {
			have[lp.Partition] = lp.Offset
		}
		for p, cur := range start {
			off := have[p] // 0 when this snapshot has none for p
			if cur < 0 || off < cur {
				start[p] = off
			}
		}
	}
	// Merge each entity type's files in source partition order: an entity's
	// features then come in the same order whatever the map's order above.
	for _, ins := range byEntity {
		slices.SortFunc(ins, func(a, b *snapshotInput) int {
			return cmp.Or(strings.Compare(a.choice.Source.Topic, b.choice.Source.Topic), cmp.Compare(a.choice.Source.Partition, b.choice.Source.Partition))
		})
	}
	entities, err := s.ingestSnapshots(ctx, byEntity, 0)
	if err != nil {
		return err
	}
	b := s.o.Store.NewBatch()
	for p, off := range start {
		_ = b.Set(keys.ViewLogOffset(s.o.Config.Kafka.FeatureLogTopic, p), keys.PutU64(max(off, 0)), nil)
	}
	if err := s.o.Store.Commit(b); err != nil {
		return err
	}
	s.log.Info("view loaded from snapshots", zap.Int("snapshots", len(ids)), zap.Int("partitions", len(opened)),
		zap.Int64("entity_values", entities), zap.Any("feature_log_from", start), zap.Duration("took", time.Since(t0)))
	return nil
}

// snapshotInput is one snapshot file being merged into the view.
type snapshotInput struct {
	choice  snapshot.Choice
	updated int64 // ms: when the snapshot was taken
	r       *snapshot.Reader
	key     []byte // the entity key of the current pair, aliasing r
	ok      bool   // r is at a pair
}

// next moves in to its next pair.
func (in *snapshotInput) next() error {
	if in.ok = in.r.Next(); !in.ok {
		return in.r.Err()
	}
	key, err := keys.StateEntityKey(in.r.Key())
	if err != nil {
		return fmt.Errorf("snapshot %s (%s): %w", in.choice.Manifest.ID, in.choice.Source.File, err)
	}
	in.key = key
	return nil
}

// coldChunkBytes is the default size of a coldChunk's snapshot values: big
// enough that its table is worth a file (a 1M-entity view is ~10 tables),
// small enough that GOMAXPROCS workers get several chunks each to balance.
const coldChunkBytes = 8 << 20

// ingestSnapshots builds the view of every entity from the snapshot files
// of byEntity (open: each input's r, at its start) and ingests it into the empty store (state.Store.IngestTables):
// no read of the store, no memtable, no compaction. Each file holds one
// source partition's state of one entity type in entity-key order, so a
// merge of an entity type's files visits its entities in view-key order and
// sees every partition holding an entity at once: the entity's view gets one
// series per (feature, source partition) present, as the feature log would
// give it. It returns the number of entities written.
//
// The work is spread over GOMAXPROCS: this goroutine merges the files and
// cuts the merged entities into chunks of about chunkBytes of snapshot
// values (coldChunkBytes when 0), consecutive in key order; workers build
// the views of a chunk (decode and encode, see buildChunk) and write them to
// one uncompressed sstable per chunk; all the tables are ingested in one
// atomic Ingest at the end. Views are those of one merge in one goroutine,
// byte for byte (TestColdStartViewsAreTheReferenceViews). Memory: about
// 2×GOMAXPROCS+2 chunks of snapshot values at once.
func (s *Service) ingestSnapshots(ctx context.Context, byEntity map[string][]*snapshotInput, chunkBytes int) (int64, error) {
	if chunkBytes <= 0 {
		chunkBytes = coldChunkBytes
	}
	prefix := func(name string) []byte { return keys.View(nil, name, "") }
	names := make([]string, 0, len(byEntity))
	for name := range byEntity {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return bytes.Compare(prefix(a), prefix(b)) })
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	workers := runtime.GOMAXPROCS(0)
	work := make(chan *coldChunk, workers)
	free := make(chan *coldChunk, 2*workers+2)
	for range cap(free) {
		free <- &coldChunk{}
	}
	var (
		mu     sync.Mutex
		tables []*state.IngestTable // by chunk number
	)
	defer func() {
		for _, t := range tables {
			if t != nil {
				t.Discard()
			}
		}
	}()
	var ww sync.WaitGroup
	for range workers {
		ww.Add(1)
		go func() {
			defer ww.Done()
			b := chunkBuilder{intern: map[string]string{}}
			for c := range work {
				if ctx.Err() != nil { // another worker failed: drain
					c.reset()
					free <- c
					continue
				}
				t, err := s.o.Store.NewIngestTable(state.IngestTableOptions{Uncompressed: true})
				if err == nil {
					err = b.build(c, t)
					if ferr := t.Finish(); err == nil {
						err = ferr
					}
				}
				mu.Lock()
				if t != nil {
					tables[c.seq] = t
				}
				mu.Unlock()
				if err != nil {
					cancel(err)
				}
				c.reset()
				free <- c
			}
		}()
	}
	entities, merr := mergeSnapshots(ctx, names, byEntity, chunkBytes, free, func(c *coldChunk) {
		mu.Lock()
		c.seq = len(tables)
		tables = append(tables, nil)
		mu.Unlock()
		work <- c
	})
	close(work)
	ww.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, err // a worker's error, or ctx's
	}
	if merr != nil {
		return 0, merr
	}
	n, err := s.o.Store.IngestTables(ctx, tables)
	tables = nil // IngestTables removed them
	if err != nil {
		return 0, err
	}
	if n != entities {
		return 0, fmt.Errorf("load snapshots: %d views ingested, %d entities merged", n, entities)
	}
	return n, nil
}

// mergeSnapshots merges the files of every entity type of names (in that
// order) by entity key, and passes to send chunks (taken from free) of
// whole entities in view-key order: each with its view key and, from every
// file holding it in the order of byEntity's inputs, its snapshot value.
// It returns the number of entities merged.
func mergeSnapshots(ctx context.Context, names []string, byEntity map[string][]*snapshotInput, chunkBytes int, free <-chan *coldChunk, send func(*coldChunk)) (int64, error) {
	var (
		n   int64
		cur *coldChunk
	)
	take := func() error {
		if err := context.Cause(ctx); err != nil {
			return err
		}
		select {
		case cur = <-free:
			if cap(cur.buf) == 0 { // a new chunk: one allocation, not a doubling series
				cur.buf = make([]byte, 0, chunkBytes+chunkBytes/4)
			}
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	if err := take(); err != nil {
		return 0, err
	}
	for _, name := range names {
		ins := byEntity[name]
		for _, in := range ins {
			if err := in.next(); err != nil {
				return n, err
			}
		}
		for {
			var least []byte
			for _, in := range ins {
				if in.ok && (least == nil || bytes.Compare(in.key, least) < 0) {
					least = in.key
				}
			}
			if least == nil {
				break
			}
			// The view key: keys.View(name, entity key), built from bytes.
			at := len(cur.buf)
			cur.buf = append(keys.View(cur.buf, name, ""), least...)
			ent := coldEntity{keyFrom: at, keyTo: len(cur.buf)}
			key := cur.buf[ent.keyTo-len(least) : ent.keyTo] // least, before the inputs move on
			for _, in := range ins {
				if !in.ok || !bytes.Equal(in.key, key) {
					continue
				}
				v, err := in.r.Value()
				if err != nil {
					return n, err
				}
				from := len(cur.buf)
				cur.buf = append(cur.buf, v...)
				cur.vals = append(cur.vals, coldValue{in: in, from: from, to: len(cur.buf)})
				if err := in.next(); err != nil {
					return n, err
				}
			}
			ent.vals = len(cur.vals)
			cur.ents = append(cur.ents, ent)
			n++
			if len(cur.buf) >= chunkBytes {
				send(cur)
				if err := take(); err != nil {
					return n, err
				}
			}
		}
	}
	if len(cur.ents) > 0 {
		send(cur)
	}
	return n, nil
}

// coldChunk is a run of entities merged from snapshot files, consecutive in
// view-key order, whose views one worker builds into one sstable.
type coldChunk struct {
	seq  int    // the chunk's number: its table's place in key order
	buf  []byte // view keys and snapshot values
	ents []coldEntity
	vals []coldValue
}

func (c *coldChunk) reset() {
	c.buf, c.ents = c.buf[:0], c.ents[:0]
	clear(c.vals) // drop the inputs
	c.vals = c.vals[:0]
}

// coldEntity is one entity of a coldChunk: its view key, buf[keyFrom:keyTo],
// and its snapshot values, vals[previous entity's vals:vals].
type coldEntity struct {
	keyFrom, keyTo, vals int
}

// coldValue is one snapshot value of an entity, buf[from:to], from file in.
type coldValue struct {
	in       *snapshotInput
	from, to int
}

// chunkBuilder builds the views of coldChunks; one per worker.
type chunkBuilder struct {
	e       entityView
	encoded [][]byte // of each entry of e: its series as the snapshot has it
	vbuf    []byte
	intern  map[string]string // feature ids, allocated once
}

// build writes to t the view of every entity of c, in order: the entity's
// snapshot values decoded into one entityView (a file holds one source
// partition's state: it fills that partition's series of each feature),
// which checks them, then written in the view layout with each series
// copied as the snapshot encodes it (appendViewEncoded) rather than encoded
// again: the same bytes, since the snapshot's series were encoded by
// aggregations.AppendSeries, whose encoding of a decoded series is the
// bytes it was decoded from.
func (b *chunkBuilder) build(c *coldChunk, t *state.IngestTable) error {
	from := 0
	for _, ent := range c.ents {
		b.e.reset()
		b.encoded = b.encoded[:0]
		for _, cv := range c.vals[from:ent.vals] {
			in := cv.in
			part := in.choice.Source.Partition
			cur := -1
			if err := entity.DecodeEncoded(c.buf[cv.from:cv.to], func(id []byte) *aggregations.Series {
				i := b.e.index(string(id), part) // does not escape: no allocation
				if i < 0 {
					sid, ok := b.intern[string(id)]
					if !ok {
						sid = string(id)
						b.intern[sid] = sid
					}
					i = b.e.add(sid, part)
					b.encoded = slices.Insert(b.encoded, i, nil) // where add put the entry
				}
				b.e.updated[i] = in.updated
				cur = i
				return &b.e.series[i]
			}, func(series []byte) { b.encoded[cur] = series }); err != nil {
				return fmt.Errorf("load snapshot %s (%s): %w", in.choice.Manifest.ID, in.choice.Source.File, err)
			}
		}
		from = ent.vals
		b.vbuf = appendViewEncoded(b.vbuf[:0], &b.e, b.encoded)
		if err := t.Set(c.buf[ent.keyFrom:ent.keyTo], b.vbuf); err != nil {
			return err
		}
	}
	return nil
}

// appendViewEncoded is e.encode with the series of entry i given encoded,
// as encoded[i]: the same layout (viewFormat 3), entry by entry.
func appendViewEncoded(dst []byte, e *entityView, encoded [][]byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(e.ids)))
	for i, id := range e.ids {
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = binary.AppendUvarint(dst, uint64(e.parts[i]))
		dst = binary.AppendVarint(dst, e.updated[i])
		dst = binary.AppendUvarint(dst, uint64(len(encoded[i])))
		dst = append(dst, encoded[i]...)
	}
	return dst
}
