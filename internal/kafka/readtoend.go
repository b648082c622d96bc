package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Range is the part of one partition a reader reads: offsets From (inclusive)
// to End (exclusive).
type Range struct {
	From, End int64
}

// Ranges maps partitions to the ranges to read.
type Ranges map[int32]Range

// ToEnd returns, for every partition of topic, the range from its log start
// to its end offset now (empty, From == End, for an empty partition): the last stable offset
// (read-committed), so that an open transaction is not waited for and
// records it may still commit are not expected. A topic that does not exist
// is empty: no ranges, no error. Retriable metadata errors of a topic created
// moments ago are retried for up to 30 seconds.
func ToEnd(ctx context.Context, cl *kgo.Client, topic string) (Ranges, error) {
	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("look up topic %s: %w", topic, err)
	}
	if td, ok := topics[topic]; !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return Ranges{}, nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, err := toEnd(ctx, adm, topic)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil || !retriable(err) {
			return rs, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func retriable(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.LeaderNotAvailable) ||
		errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, errNoPartitions) || kerr.IsRetriable(err)
}

func toEnd(ctx context.Context, adm *kadm.Client, topic string) (Ranges, error) {
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	rs := Ranges{}
	n := 0
	ends.Each(func(o kadm.ListedOffset) {
		n++
		from := int64(0)
		if s, ok := starts.Lookup(topic, o.Partition); ok {
			from = s.Offset
		}
		rs[o.Partition] = Range{From: min(from, o.Offset), End: o.Offset}
	})
	if n == 0 {
		return nil, fmt.Errorf("topic %s: %w", topic, errNoPartitions)
	}
	return rs, nil
}

// ReadToEnd reads topic from its log start up to its end offsets as of the
// call (see ToEnd) and calls fn with every committed data record below them,
// in offset order within a partition. See ReadRanges.
func ReadToEnd(ctx context.Context, cl *kgo.Client, topic string, fn func(*kgo.Record) error) error {
	rs, err := ToEnd(ctx, cl, topic)
	if err != nil {
		return err
	}
	_, err = ReadRanges(ctx, cl, topic, rs, fn)
	return err
}

// CatchUp reads topic up to its end offsets (ToEnd) and calls fn with
// every record, as ReadRanges does, and returns each partition's read
// position (see ReadBatches): where a follower goes on from. adjust, if not
// nil, may move the ranges' starts before the read (e.g. to a time).
//
// A failure (Kafka unreachable, a topic created moments ago) is passed to
// onRetry (may be nil) and the read is retried after a second, until it
// succeeds or ctx ends (ctx's error is returned then). A retry resumes
// each partition after the last record passed to fn, so fn sees each
// record once.
func CatchUp(ctx context.Context, cl *kgo.Client, topic string, adjust func(Ranges) error, fn func(*kgo.Record), onRetry func(error)) (map[int32]int64, error) {
	passed := map[int32]int64{} // per partition, one past the last record passed to fn
	for {
		rs, err := ToEnd(ctx, cl, topic)
		if err == nil && adjust != nil {
			err = adjust(rs)
		}
		var next map[int32]int64
		if err == nil {
			for p, r := range rs {
				if o, ok := passed[p]; ok && o > r.From {
					r.From = min(o, r.End)
					rs[p] = r
				}
			}
			next, err = ReadBatches(ctx, cl, topic, rs, func(p int32, recs []*kgo.Record) error {
				for _, r := range recs {
					fn(r)
				}
				passed[p] = recs[len(recs)-1].Offset + 1
				return nil
			})
		}
		if err == nil {
			return next, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if onRetry != nil {
			onRetry(err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// StartAt moves each range of topic to the first offset appended at or
// after ms (Kafka's ListOffsets by timestamp), never before its From nor
// past its End; a partition without a record at or after ms starts at its
// End (nothing to read).
func StartAt(ctx context.Context, cl *kgo.Client, topic string, ms int64, rs Ranges) error {
	if len(rs) == 0 {
		return nil
	}
	after, err := kadm.NewClient(cl).ListOffsetsAfterMilli(ctx, ms, topic)
	if err == nil {
		err = after.Error()
	}
	if err != nil {
		return fmt.Errorf("list offsets of %s after %s: %w", topic, time.UnixMilli(ms).UTC().Format(time.RFC3339), err)
	}
	for p, r := range rs {
		if o, ok := after.Lookup(topic, p); ok {
			if o.Offset < 0 { // none at or after ms (kadm may also answer the end offset)
				o.Offset = r.End
			}
			r.From = min(max(r.From, o.Offset), r.End)
			rs[p] = r
		}
	}
	return nil
}

// FollowFrom returns the consume options that go on reading topic where a
// CatchUp stopped: each partition of next from its read position; when
// next is empty (the topic did not exist), the whole topic from reset once
// it appears (metadata is refreshed every 5 s to see it). Partitions added
// to the topic later are not followed.
func FollowFrom(topic string, next map[int32]int64, reset kgo.Offset) []kgo.Opt {
	if len(next) == 0 {
		return []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(reset), kgo.MetadataMaxAge(5 * time.Second)}
	}
	parts := make(map[int32]kgo.Offset, len(next))
	for p, off := range next {
		parts[p] = kgo.NewOffset().At(off)
	}
	return []kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})}
}

// ReadRanges is ReadBatches with one call of fn per record.
func ReadRanges(ctx context.Context, cl *kgo.Client, topic string, ranges Ranges, fn func(*kgo.Record) error) (next map[int32]int64, err error) {
	return ReadBatches(ctx, cl, topic, ranges, func(_ int32, recs []*kgo.Record) error {
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReadBatches reads the ranges of topic and calls fn with the committed data
// records in them, a partition's records in offset order, in batches (one
// per partition per fetch; partitions interleave; fn may keep the slice).
// fn's error stops the read and is returned as it is. It returns each
// partition's read position when done: the offset a follower continues from
// without missing a record: the range's End (a fetched batch may reach past
// End, but its records at or past End are not passed to fn), the new log
// start where retention deleted the rest of the range, the From of an empty
// range.
//
// Isolation is read-committed: records of aborted transactions are skipped,
// and so are transaction markers (control records). A partition is done when
// the read position reaches the range's end, not when a record at End-1 is
// seen: on a compacted topic, or one whose last records are transaction
// markers, there may be no record at End-1 at all. The position moves past
// compacted gaps, markers and aborted batches as the broker reports them, and
// a fetch at the position that returns no batch below the partition's last
// stable offset means everything up to it was compacted away.
//
// It issues Fetch requests itself (no consumer group, no fetch session) on
// cl, which needs no consume options: cl's other work is unaffected. A
// range whose start was deleted by retention resumes at the new log start.
// Cost: one Fetch per leader broker per round, up to 8 MiB per partition and
// 64 MiB in all; memory: up to three responses (one decoded, two queued).
// Record batches must be of the v2 format (Kafka 0.11 on; Kafka 4 writes
// nothing else).
func ReadBatches(ctx context.Context, cl *kgo.Client, topic string, ranges Ranges, fn func(partition int32, recs []*kgo.Record) error) (next map[int32]int64, err error) {
	return read(ctx, cl, topic, ranges, func(p Part) error { return fn(p.Partition, p.Records) }, nil)
}

// Part is one partition's records of a ReadRounds round, in offset order.
type Part struct {
	Partition int32
	Records   []*kgo.Record
}

// ReadRounds is ReadBatches calling fn once per fetch response (a round)
// with the records of all its partitions that have some, in the
// response's order, instead of once per partition: a reader whose
// entities' records are spread over the partitions (the feature log, keyed
// by tile) can then apply them together. fn may keep the slices. Memory:
// a round's records are all decoded before fn is called, up to 64 MiB of
// batches (8 MiB per partition), where ReadBatches decodes one partition
// at a time.
func ReadRounds(ctx context.Context, cl *kgo.Client, topic string, ranges Ranges, fn func(round []Part) error) (next map[int32]int64, err error) {
	var round []Part
	return read(ctx, cl, topic, ranges, func(p Part) error {
		round = append(round, p)
		return nil
	}, func() error {
		r := round
		round = nil // fn may keep r
		return fn(r)
	})
}

// read reads the ranges and calls each with every partition's decoded
// records of a fetch response, as it decodes them, then responseDone (if
// not nil) once that response had records.
func read(ctx context.Context, cl *kgo.Client, topic string, ranges Ranges, each func(Part) error, responseDone func() error) (map[int32]int64, error) {
	// Two goroutines: the fetcher issues Fetch requests and moves the
	// positions on from the raw batch headers (see fetchLoop); this one
	// decodes the batches it sent and calls each, while the next fetch is in
	// flight.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan []fetched, 2)
	var (
		ferr error
		next map[int32]int64
	)
	go func() {
		defer close(work)
		next, ferr = fetchLoop(fctx, cl, topic, ranges, work)
	}()
	dec := kgo.DefaultDecompressor()
	var perr error
	for batch := range work {
		if perr != nil {
			continue // drain until the fetcher stops
		}
		passed := false
		for _, f := range batch {
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
				Offset: f.start, IsolationLevel: kgo.ReadCommitted(), Topic: topic, Partition: f.rp.Partition,
			}, f.rp, dec, nil)
			if fp.Err != nil {
				perr = fmt.Errorf("read %s/%d at offset %d: %w", topic, f.rp.Partition, f.start, fp.Err)
				break
			}
			recs := fp.Records
			for i, r := range recs {
				if r.Offset >= f.end {
					recs = recs[:i]
					break
				}
			}
			if len(recs) > 0 {
				passed = true
				if perr = each(Part{f.rp.Partition, recs}); perr != nil {
					break
				}
			}
		}
		if perr == nil && passed && responseDone != nil {
			perr = responseDone()
		}
		if perr != nil {
			cancel()
		}
	}
	if perr != nil {
		return nil, perr
	}
	if ferr != nil {
		return nil, ferr
	}
	return next, nil
}

// fetched is one partition's raw fetch response, fetched at start, to be
// decoded below end.
type fetched struct {
	rp         *kmsg.FetchResponseTopicPartition
	start, end int64
}

// fetchLoop fetches every range to its end and sends the responses that hold
// batches to work. It keeps the positions: a response moves a partition to
// one past the last offset of its last complete batch (batchesEnd); an
// empty response at or above the last stable offset's reach ends the range.
func fetchLoop(ctx context.Context, cl *kgo.Client, topic string, ranges Ranges, work chan<- []fetched) (map[int32]int64, error) {
	pos := make(map[int32]int64, len(ranges))
	next := make(map[int32]int64, len(ranges))
	retained := map[int32]int64{} // the log start where retention moved a position
	for p, r := range ranges {
		next[p] = r.From
		if r.From < r.End {
			pos[p] = r.From
		}
	}
	done := func(p int32) {
		// Not past End: the records of a batch past End were not passed on.
		next[p] = min(pos[p], max(ranges[p].End, retained[p]))
		delete(pos, p)
	}
	adm := kadm.NewClient(cl)
	var meta kadm.TopicDetail
	refresh := true
	backoff := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
			return nil
		}
	}
	for len(pos) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		if refresh {
			md, err := adm.Metadata(ctx, topic)
			if err != nil {
				if berr := backoff(); berr != nil {
					return nil, fmt.Errorf("read %s: metadata: %w (%w)", topic, err, berr)
				}
				continue
			}
			meta = md.Topics[topic]
			refresh = false
		}
		byLeader := map[int32][]int32{}
		for p := range pos {
			pd, ok := meta.Partitions[p]
			if !ok || pd.Leader < 0 {
				refresh = true
				continue
			}
			byLeader[pd.Leader] = append(byLeader[pd.Leader], p)
		}
		if len(byLeader) == 0 {
			if err := backoff(); err != nil {
				return nil, fmt.Errorf("read %s: %w", topic, err)
			}
			continue
		}
		leaders := make([]int32, 0, len(byLeader))
		for l := range byLeader {
			leaders = append(leaders, l)
		}
		sort.Slice(leaders, func(i, j int) bool { return leaders[i] < leaders[j] })
		stalled := true        // no partition moved this round
		var outOfRange []int32 // positions the broker no longer has
		for _, leader := range leaders {
			parts := byLeader[leader]
			sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
			resp, err := fetch(ctx, cl, leader, topic, meta.ID, parts, pos)
			if err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("read %s: %w", topic, ctx.Err())
				}
				refresh = true
				continue
			}
			// A partition answered without batches below its last stable
			// offset was compacted away from there only if the response had
			// room for it: a broker that reaches the request's MaxBytes
			// answers the partitions after that point without batches. No
			// batch for any partition means the limit was not reached (the
			// first partition with data always gets one batch).
			busy := false
			for i := range resp.Topics {
				for j := range resp.Topics[i].Partitions {
					rp := &resp.Topics[i].Partitions[j]
					if start, ok := pos[rp.Partition]; ok && rp.ErrorCode == 0 && batchesEnd(rp.RecordBatches) > start {
						busy = true
					}
				}
			}
			var out []fetched
			for i := range resp.Topics {
				for j := range resp.Topics[i].Partitions {
					rp := &resp.Topics[i].Partitions[j]
					start, ok := pos[rp.Partition]
					if !ok {
						continue
					}
					end := ranges[rp.Partition].End
					err := kerr.ErrorForCode(rp.ErrorCode) // nil for code 0
					switch to := batchesEnd(rp.RecordBatches); {
					case errors.Is(err, kerr.OffsetOutOfRange) && rp.LogStartOffset > start:
						pos[rp.Partition] = rp.LogStartOffset // deleted by retention
						retained[rp.Partition] = rp.LogStartOffset
						stalled = false
					case errors.Is(err, kerr.OffsetOutOfRange):
						// Apache Kafka answers OFFSET_OUT_OF_RANGE with log start
						// -1 (kfake sends the real one): ask for it.
						outOfRange = append(outOfRange, rp.Partition)
					case kerr.IsRetriable(err):
						refresh = true
					case err != nil:
						return nil, fmt.Errorf("read %s/%d at offset %d: %w", topic, rp.Partition, start, err)
					case to > start:
						out = append(out, fetched{rp: rp, start: start, end: end})
						pos[rp.Partition] = to
						stalled = false
					case len(rp.RecordBatches) == 0 && rp.LastStableOffset >= end && !busy:
						// Nothing left below the last stable offset, and
						// the response had room: the rest of the range was
						// compacted away.
						pos[rp.Partition] = end
						stalled = false
					}
					if pos[rp.Partition] >= end {
						done(rp.Partition)
					}
				}
			}
			if len(outOfRange) > 0 {
				moved, err := skipRetained(ctx, adm, topic, outOfRange, pos)
				if err != nil {
					return nil, err
				}
				for p, ls := range moved {
					retained[p] = ls
					stalled = false
					if ls >= ranges[p].End {
						done(p)
					}
				}
				if len(moved) < len(outOfRange) {
					refresh = true
				}
				outOfRange = outOfRange[:0]
			}
			if len(out) > 0 {
				select {
				case work <- out:
				case <-ctx.Done():
					return nil, fmt.Errorf("read %s: %w", topic, ctx.Err())
				}
			}
		}
		if stalled && len(pos) > 0 {
			// Waiting for a transaction to end, a leader to move, or a
			// broker to answer: the fetches already waited MaxWait, or
			// failed; do not spin.
			if err := backoff(); err != nil {
				return nil, fmt.Errorf("read %s: %w", topic, err)
			}
		}
	}
	return next, nil
}

// skipRetained moves the positions of parts, which a broker answered with
// OFFSET_OUT_OF_RANGE, to their partition's log start when retention (or
// DeleteRecords) moved it past them, and returns the moved ones. A partition
// whose log start is not past its position is left alone: its leader may be
// moving, and the caller refreshes metadata and retries.
func skipRetained(ctx context.Context, adm *kadm.Client, topic string, parts []int32, pos map[int32]int64) (map[int32]int64, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read %s: %w", topic, ctx.Err())
		}
		return nil, nil // retried after a metadata refresh
	}
	moved := map[int32]int64{}
	for _, p := range parts {
		o, ok := starts.Lookup(topic, p)
		if !ok || o.Err != nil || o.Offset <= pos[p] {
			continue
		}
		pos[p] = o.Offset
		moved[p] = o.Offset
	}
	return moved, nil
}

// fetch sends one read-committed Fetch for parts at their positions to
// leader.
func fetch(ctx context.Context, cl *kgo.Client, leader int32, topic string, id kadm.TopicID, parts []int32, pos map[int32]int64) (*kmsg.FetchResponse, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 250
	req.MinBytes = 1
	req.MaxBytes = 64 << 20
	req.IsolationLevel = 1
	req.SessionID = 0
	req.SessionEpoch = -1
	t := kmsg.NewFetchRequestTopic()
	t.Topic = topic
	t.TopicID = id
	for _, p := range parts {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition = p
		fp.FetchOffset = pos[p]
		fp.LogStartOffset = -1
		fp.PartitionMaxBytes = 8 << 20
		fp.CurrentLeaderEpoch = -1
		t.Partitions = append(t.Partitions, fp)
	}
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl.Broker(int(leader)))
	if err != nil {
		return nil, err
	}
	if resp.ErrorCode != 0 {
		return nil, kerr.ErrorForCode(resp.ErrorCode)
	}
	return resp, nil
}

// batchesEnd returns one past the last offset of the last complete v2
// record batch in raw (0 if none). A batch keeps its last offset when
// compaction removes records from its end, so this moves the position past
// them, which record offsets alone would not.
func batchesEnd(raw []byte) int64 {
	var end int64
	for len(raw) >= 27 {
		base := int64(binary.BigEndian.Uint64(raw[0:8]))
		length := int64(int32(binary.BigEndian.Uint32(raw[8:12])))
		if length < 15 || int64(len(raw)) < 12+length {
			break
		}
		if raw[16] == 2 { // magic: v2 batches carry lastOffsetDelta at byte 23
			delta := int64(int32(binary.BigEndian.Uint32(raw[23:27])))
			end = max(end, base+delta+1)
		}
		raw = raw[12+length:]
	}
	return end
}
