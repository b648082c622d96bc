package backfill

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// OffsetRange is the part of one partition a backfill replayed: offsets From
// (inclusive) to To (exclusive, the end offset listed at the start).
type OffsetRange struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	From      int64  `json:"from"`
	To        int64  `json:"to"`
	// Snapshot is the id of the snapshot the partition's state started from
	// (Options.Snapshots), its replay then starting at or after the
	// snapshot's next offset; "" when the partition was replayed alone.
	Snapshot string `json:"snapshot,omitempty"`
}

// rawEvent is one kept event: compact, with its values in a flat slice
// (plan.Width() per event: the field values, then the where outcomes)
// beside it.
type rawEvent struct {
	ent     int32 // index of the entity key in the spine's key table
	ts      int64 // event time, ms
	seq     int64 // Kafka offset
	arrival int64 // Kafka record timestamp, ms
}

// partEvents are the events kept from one partition, in chunks of at most
// chunkEvents events: appending never copies what is kept (a slice grown
// by doubling copies it about once more: ~0.5 GB moved for 10M events),
// and a partition that keeps few events holds little.
type partEvents struct {
	chunks []eventChunk
	n      int // events in every chunk
}

// eventChunk holds events and their values (plan.Width() each) and, for a
// plan with string slots (events.Plan.HasStrings), their strings
// (len(plan.Fields) each, "" outside the string slots); strs is nil for
// every other plan, so number sources keep no strings.
type eventChunk struct {
	events []rawEvent
	values []float64
	strs   []string
	// bkts holds, for a plan with bucketed features, their bucket keys
	// (len(plan.BucketFields) each, events.Event.Buckets); nil otherwise.
	bkts []string
}

// chunkEvents is the capacity of a full chunk.
const chunkEvents = 1 << 16

// add appends one event, its values and its strings (events.Event.Strs:
// empty for a plan without string slots). Chunks start at 1,024 events and
// double up to chunkEvents.
func (pe *partEvents) add(e rawEvent, vals []float64, strs, bkts []string) {
	if k := len(pe.chunks); k == 0 || len(pe.chunks[k-1].events) == cap(pe.chunks[k-1].events) {
		size := 1 << 10
		if k > 0 {
			size = min(2*cap(pe.chunks[k-1].events), chunkEvents)
		}
		c := eventChunk{events: make([]rawEvent, 0, size), values: make([]float64, 0, size*len(vals))}
		if len(strs) > 0 {
			c.strs = make([]string, 0, size*len(strs))
		}
		if len(bkts) > 0 {
			c.bkts = make([]string, 0, size*len(bkts))
		}
		pe.chunks = append(pe.chunks, c)
	}
	c := &pe.chunks[len(pe.chunks)-1]
	c.events = append(c.events, e)
	c.values = append(c.values, vals...)
	c.strs = append(c.strs, strs...)
	c.bkts = append(c.bkts, bkts...)
	pe.n++
}

// replayStats count what a replay saw.
type replayStats struct {
	records  atomic.Int64 // records read within the ranges
	kept     atomic.Int64 // valid events of a spine entity
	mu       sync.Mutex
	rejected map[string]int64 // by events.Reason*
}

func (s *replayStats) reject(reason string) {
	s.mu.Lock()
	s.rejected[reason]++
	s.mu.Unlock()
}

// sourceReplay is what to replay of one source topic and, after replay, its
// events per partition.
type sourceReplay struct {
	plan    *events.Plan
	startMS int64 // first record timestamp needed; math.MinInt64 = from the start
	ranges  []OffsetRange
	byPart  []partEvents // parallel to ranges
	// logStarts are the partitions' log start offsets, parallel to ranges.
	logStarts []int64
	// foreign, in a sharded run reading only its partitions of this source,
	// are the spine's keys other shards own (key -> shard): reading one of
	// them fails the replay (ErrNotCanonical). nil: no check.
	foreign map[string]int
}

// listRanges fills src.ranges, src.logStarts and src.byPart (see ListRanges).
func listRanges(ctx context.Context, adm *kadm.Client, src *sourceReplay) error {
	ranges, logStarts, err := ListRanges(ctx, adm, src.plan.Source.Topic, src.startMS)
	if err != nil {
		return err
	}
	src.ranges, src.logStarts = ranges, logStarts
	src.byPart = make([]partEvents, len(ranges))
	return nil
}

// ListRanges lists what to read of every partition of topic, sorted by
// partition: from the first offset whose record timestamp is at or after
// startMS (math.MinInt64: the log start; a partition without such a record
// gets an empty range) to the end offset listed now (the last stable
// offset). logStarts are the
// partitions' log start offsets, parallel to ranges. It costs three
// ListOffsets round trips (two for math.MinInt64) and fails for a topic
// that does not exist or has no partitions.
func ListRanges(ctx context.Context, adm *kadm.Client, topic string, startMS int64) (ranges []OffsetRange, logStarts []int64, err error) {
	// Last stable offsets: replays read committed records only, and must
	// not wait for transactions still open (see kafka.ReadBatches).
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list end offsets of %s (does the topic exist?): %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	var after kadm.ListedOffsets
	if startMS != math.MinInt64 {
		// A partition without a record at or after startMS lists its end.
		after, err = adm.ListOffsetsAfterMilli(ctx, max(startMS, 0), topic)
		if err == nil {
			err = after.Error()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("list offsets of %s after %d: %w", topic, startMS, err)
		}
	}
	logStart := map[int32]int64{}
	ends.Each(func(e kadm.ListedOffset) {
		r := OffsetRange{Topic: topic, Partition: e.Partition, To: e.Offset}
		if s, ok := starts.Lookup(topic, e.Partition); ok {
			r.From = s.Offset
		}
		logStart[e.Partition] = r.From
		if a, ok := after.Lookup(topic, e.Partition); ok && a.Offset > r.From {
			r.From = a.Offset
		}
		r.From = min(r.From, r.To)
		ranges = append(ranges, r)
	})
	if len(ranges) == 0 {
		return nil, nil, fmt.Errorf("topic %s has no partitions (does it exist?)", topic)
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].Partition < ranges[j].Partition })
	logStarts = make([]int64, len(ranges))
	for i, r := range ranges {
		logStarts[i] = logStart[r.Partition]
	}
	return ranges, logStarts, nil
}

// replay reads every range of every source with one client (one
// kafka.ReadBatches per topic: read-committed, each range read up to its
// end by position), decoding each partition in its own goroutine, and
// returns when every range is read. keep maps an entity key to its index in
// the spine's key table; events of other keys are dropped after validation.
func replay(ctx context.Context, opts []kgo.Opt, srcs []*sourceReplay, dec *events.Decoder,
	keep map[string]int32, onRecords func(n int), st *replayStats) error {
	type job struct {
		src *sourceReplay
		i   int
		in  chan []*kgo.Record
	}
	read := map[string]kafka.Ranges{}
	jobs := map[string]map[int32]*job{}
	var all []*job
	for _, s := range srcs {
		for i, r := range s.ranges {
			if r.From >= r.To {
				continue
			}
			if read[r.Topic] == nil {
				read[r.Topic] = kafka.Ranges{}
				jobs[r.Topic] = map[int32]*job{}
			}
			read[r.Topic][r.Partition] = kafka.Range{From: r.From, End: r.To}
			j := &job{src: s, i: i, in: make(chan []*kgo.Record, 4)}
			jobs[r.Topic][r.Partition] = j
			all = append(all, j)
		}
	}
	if len(all) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()

	var wg sync.WaitGroup
	var tempMu sync.Mutex
	var tempErr error    // the first record the schema registry could not resolve
	var foreignErr error // the first record of another shard's entity
	for _, j := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pe := &j.src.byPart[j.i]
			plan := j.src.plan
			nf := plan.Width() // values and where outcomes
			var ev events.Event
			for batch := range j.in {
				for _, rec := range batch {
					arrival := rec.Timestamp.UnixMilli()
					if rej := dec.Decode(plan, rec.Key, rec.Value, arrival, &ev); rej != nil {
						if rej.Temporary { // not a bad record: the backfill cannot be exact
							tempMu.Lock()
							if tempErr == nil {
								tempErr = fmt.Errorf("%s/%d offset %d: %w", rec.Topic, rec.Partition, rec.Offset, rej)
							}
							tempMu.Unlock()
							continue
						}
						st.reject(rej.Reason)
						continue
					}
					ent, ok := keep[ev.Key]
					if !ok {
						if owner, theirs := j.src.foreign[ev.Key]; theirs {
							tempMu.Lock()
							if foreignErr == nil {
								foreignErr = fmt.Errorf("%w: %s/%d offset %d: entity %q belongs to shard %d, which does not read this partition: "+
									"the producers of %s do not partition by murmur2 of the key (Kafka's Java client and franz-go default); run this backfill without --shard",
									ErrNotCanonical, rec.Topic, rec.Partition, rec.Offset, ev.Key, owner, rec.Topic)
							}
							tempMu.Unlock()
						}
						continue
					}
					pe.add(rawEvent{ent: ent, ts: ev.TS, seq: rec.Offset, arrival: arrival}, ev.Values[:nf], ev.Strs, ev.Buckets)
				}
				st.records.Add(int64(len(batch)))
				if onRecords != nil {
					onRecords(len(batch))
				}
			}
		}()
	}
	g, gctx := errgroup.WithContext(ctx)
	for topic, rs := range read {
		g.Go(func() error {
			_, err := kafka.ReadBatches(gctx, cl, topic, rs, func(p int32, recs []*kgo.Record) error {
				select {
				case jobs[topic][p].in <- recs:
					return nil
				case <-gctx.Done():
					return gctx.Err()
				}
			})
			return err
		})
	}
	err = g.Wait()
	for _, j := range all {
		close(j.in)
	}
	wg.Wait()
	for _, j := range all {
		st.kept.Add(int64(j.src.byPart[j.i].n))
	}
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if tempErr != nil {
		return fmt.Errorf("replay: %w", tempErr)
	}
	if foreignErr != nil {
		return fmt.Errorf("replay: %w", foreignErr)
	}
	return nil
}
