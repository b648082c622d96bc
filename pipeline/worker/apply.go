package worker

// Apply and commit: one poll's records are decoded, applied to the cached
// entities of their partitions in parallel, and committed with their next
// offsets in one Pebble batch.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// apply applies one poll's records of every partition and commits all their
// state changes with their next offsets in ONE Pebble batch. Partitions are
// decoded and applied in parallel (up to GOMAXPROCS at once): they share no
// state.
func (w *Worker) apply(ctx context.Context, fetches kgo.Fetches) error {
	now := w.o.Now().UnixMilli()
	// Only a full poll's batch (a backlog) tells pollSize how many records
	// bring an entity (counted at the commit); after any other poll, or
	// one that commits nothing, polls take MaxPollRecords again.
	full := fetches.NumRecords() >= w.pollN
	w.lastRecords, w.lastModified = 0, 0
	type work struct {
		ps *partState
		fp kgo.FetchTopicPartition
	}
	var todo []work
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		// nil: revoked while fetched; restoring: fetched before paused.
		if ps := w.partition(fp.Topic, fp.Partition); ps != nil && !ps.restoring {
			todo = append(todo, work{ps, fp})
		}
	})
	errs := make([]error, len(todo))
	w.applying = len(todo) // read by prefetch, in the goroutines below
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, t := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = w.applyPartition(t.ps, t.fp, now)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var staged []*partState
	w.dead = w.dead[:0]
	w.repart = w.repart[:0]
	for _, t := range todo {
		ps := t.ps
		w.dead = append(w.dead, ps.dead...)
		w.repart = append(w.repart, ps.repart...)
		if ps.staged > ps.next {
			staged = append(staged, ps)
			if t.fp.HighWatermark >= 0 {
				w.setLag(ps, t.fp.HighWatermark)
			}
		}
	}
	booted, err := w.applyBoot(ctx, now)
	if err != nil {
		return err
	}
	for _, ps := range booted {
		if ps.staged <= ps.next { // not staged by the live stream
			ps.staged, ps.applied = ps.next, 0
			staged = append(staged, ps)
		}
	}
	if len(staged) == 0 {
		return nil
	}
	// Dead letters first: once the offsets are committed they must be safe.
	if len(w.dead) > 0 {
		if err := w.cl.ProduceSync(ctx, w.dead...).FirstErr(); err != nil {
			w.m.Errors.WithLabelValues("dead_letter").Inc()
			return fmt.Errorf("produce %d dead letters: %w", len(w.dead), err)
		}
		for _, d := range w.dead {
			w.m.DeadLetters.WithLabelValues(headerValue(d, HeaderSource), headerValue(d, HeaderReason)).Inc()
		}
	}
	// Re-keyed copies too: a source offset is committed only once its
	// records are in their repartition topics (see repartition.go).
	if len(w.repart) > 0 {
		if err := w.cl.ProduceSync(ctx, w.repart...).FirstErr(); err != nil {
			w.m.Errors.WithLabelValues("repartition").Inc()
			return fmt.Errorf("produce %d re-keyed records: %w", len(w.repart), err)
		}
		w.m.Repartitioned.Add(float64(len(w.repart)))
	}
	w.enc.encode(staged)
	defer w.enc.release()
	b := w.o.Store.NewBatch()
	next := 0
	for _, ps := range staged {
		for range ps.modified {
			key, val := w.enc.entry(next)
			next++
			if err := b.Set(key, val, nil); err != nil {
				b.Close()
				return fmt.Errorf("stage state of %s/%d: %w", ps.tp.topic, ps.tp.partition, err)
			}
		}
		stageRekeyHistory(b, ps)
		if ps.marks != nil {
			if err := ps.marks.stage(b, ps.tp, ""); err != nil {
				b.Close()
				return err
			}
		}
		if ps.staged > ps.applyFrom {
			if err := b.Set(keys.Offset(ps.tp.topic, ps.tp.partition), keys.PutU64(ps.staged), nil); err != nil {
				b.Close()
				return fmt.Errorf("stage offset of %s/%d: %w", ps.tp.topic, ps.tp.partition, err)
			}
		}
		for _, bf := range ps.boot {
			if bf.staged == bf.next {
				continue
			}
			id := ps.plan.Features[bf.idx].ID
			if bf.staged >= bf.end {
				_ = b.Delete(keys.Bootstrap(ps.tp.topic, ps.tp.partition, id), nil)
				_ = b.Set(keys.Republish(ps.tp.topic, ps.tp.partition, id), nil, nil)
				if bf.marks != nil {
					deleteMarks(b, ps.tp, id)
				}
			} else {
				_ = b.Set(keys.Bootstrap(ps.tp.topic, ps.tp.partition, id), keys.PutRange(bf.staged, bf.end), nil)
				if bf.marks != nil {
					if err := bf.marks.stage(b, ps.tp, id); err != nil {
						b.Close()
						return err
					}
				}
			}
		}
	}
	t0 := time.Now()
	if err := w.o.Store.Commit(b); err != nil {
		w.m.Errors.WithLabelValues("commit").Inc()
		return fmt.Errorf("commit %s/%d through offset %d: %w", staged[0].tp.topic, staged[0].tp.partition, staged[0].staged, err)
	}
	w.m.BatchCommit.Observe(time.Since(t0).Seconds())
	if full {
		for _, ps := range staged {
			if len(ps.plan.Features) > 0 { // not a source whose features are all re-keyed
				w.lastRecords += ps.applied
				w.lastModified += len(ps.modified)
			}
		}
	}
	total := 0
	// Under the publisher's lock: the revoke callback publishes from these
	// fields (ps.next) and the pending list.
	w.pub.mu.Lock()
	defer w.pub.mu.Unlock()
	for _, ps := range staged {
		w.commitBoot(ps)
		commitRekeyHistory(ps)
		ps.next = ps.staged
		ps.applyFrom = max(ps.applyFrom, ps.next)
		for _, es := range ps.modified {
			es.modified = false
		}
		ps.modified = ps.modified[:0]
		total += ps.applied
		// Freshness before the event count: whoever sees the count of
		// these events sees their event times too.
		ps.commitNewest()
		ps.metrics.eventsIn.Add(float64(ps.applied))
		ps.metrics.singleLoads.Add(float64(ps.singleLoads))
		ps.metrics.prefetchLoads.Add(float64(ps.prefetchLoads))
		ps.skipPrefetch = !prefetchNext(ps.touches, ps.singleLoads+ps.prefetchLoads)
		ps.singleLoads, ps.prefetchLoads, ps.touches = 0, 0, 0
		w.commitOffCanonical(ps, ps.metrics.offCanonical)
		w.pub.addLocked(ps)
	}
	w.m.BatchEvents.Observe(float64(total))
	return nil
}

// applyPartition applies one partition's records to its cached entities and
// stages the result (ps.staged, ps.modified) for the batch commit, with the
// re-keyed copies of a source partition's records (ps.repart) and the
// repartition marks of a repartition partition (ps.marks). Nothing is
// visible in Pebble until the commit.
func (w *Worker) applyPartition(ps *partState, fp kgo.FetchTopicPartition, now int64) error {
	plan := ps.plan
	ps.staged, ps.applied = ps.next, 0
	ps.dead = ps.dead[:0]
	ps.repart = ps.repart[:0]
	defer func() { ps.quiet = false }()
	if err := w.prefetch(ps, fp.Records, now); err != nil {
		return err
	}
	for _, r := range fp.Records {
		if r.Offset < ps.staged {
			continue
		}
		ps.staged = r.Offset + 1
		// Below the published mark: the feature log has this record's
		// tiles from a newer state than this store's (publishedmark.go).
		ps.quiet = r.Offset < ps.quietUntil
		replay := r.Offset < ps.applyFrom
		if !replay {
			ps.canon.observe(r)
		}
		// The event's order for last: its source record's, also when it
		// comes through a repartition topic (the same order as backfill's).
		seq := aggregations.Seq(ps.tp.partition, r.Offset)
		if plan.Repartition != nil {
			sp, soff, err := origin(r)
			if err != nil {
				if !replay {
					ps.dead = append(ps.dead, w.deadLetter(plan, r, &events.Rejection{Reason: events.ReasonMalformed, Detail: err.Error()}))
				}
				continue
			}
			// A replayed record is in state already, and so in the marks.
			if !replay && !ps.marks.admit(sp, soff) {
				ps.metrics.duplicates.Inc()
				continue
			}
			seq = aggregations.Seq(sp, soff)
		}
		rej := w.decoder.Decode(plan, r.Key, r.Value, now, &ps.dec)
		if rej != nil && rej.Temporary {
			// Not a bad record: its writer schema could not be fetched.
			// Nothing of this batch is committed; a restart resumes here.
			w.m.Errors.WithLabelValues("schema_registry").Inc()
			return fmt.Errorf("decode %s/%d offset %d: %w", ps.tp.topic, ps.tp.partition, r.Offset, rej)
		}
		if replay && len(ps.rekeyHist) > 0 {
			rekeyHistoryRecord(ps, r, rej != nil)
		}
		if ps.onlyRekeyed(r.Offset) {
			continue
		}
		if rej != nil {
			if !replay {
				ps.dead = append(ps.dead, w.deadLetter(plan, r, rej))
			}
			continue
		}
		if !replay {
			for i, k := range ps.dec.Rekeyed {
				ps.repart = append(ps.repart, repartitionRecord(ps, r, i, k))
			}
		}
		if len(plan.Features) == 0 {
			// Every feature of the source is re-keyed: no state here.
			if !replay {
				ps.applied++
			}
			continue
		}
		ps.touches++
		es, err := w.entity(ps, ps.dec.Key)
		if err != nil {
			return err
		}
		ps.recTS = r.Timestamp.UnixMilli()
		w.noteSeen(ps, es, ps.dec.TS, replay)
		if replay {
			markReplayed(ps, es)
			continue
		}
		for i := range plan.Features {
			w.applyFeature(ps, es, i, seq, now)
		}
		ps.applied++
	}
	// Expire old tiles of the entities this batch touched, once the state
	// has reached the published mark: below it, tombstones and the tiles
	// folded into a lifetime feature's base would be published from a state
	// older than the feature log's (and the base without the tiles' events
	// while the feature log still has the tiles, or the other way round).
	ps.recTS = 0
	ps.quiet = false
	if ps.staged < ps.quietUntil {
		return nil
	}
	var removed []int64
	for _, es := range ps.modified {
		for i := range plan.Features {
			var baseChanged bool
			removed, baseChanged = es.series[i].Expire(plan.Features[i].Window, now, removed[:0])
			for _, s := range removed {
				ps.markDirty(dirtyTile{es, i, s})
			}
			if baseChanged {
				ps.markDirty(dirtyTile{es, i, aggregations.BaseStart})
			}
		}
	}
	return nil
}

// onlyRekeyed reports whether the record at offset only feeds the re-keyed
// history (rekeyHistoryRecord) and reaches no entity: a record already in
// state (below applyFrom) and before the republish range (below
// published), while history is re-keyed to new repartition topics.
func (ps *partState) onlyRekeyed(offset int64) bool {
	return len(ps.rekeyHist) > 0 && offset < ps.applyFrom && offset < ps.published
}

// applyFeature applies the decoded event ps.dec (of order seq, see
// aggregations.Seq) to feature i of es, staging the entity and marking the
// changed tile dirty; an event too late for the feature's window is counted
// and dropped; an event the feature's where excludes is skipped.
func (w *Worker) applyFeature(ps *partState, es *entityState, i int, seq, now int64) {
	f := &ps.plan.Features[i]
	if !f.Counts(&ps.dec) {
		return // the feature's where is false for this event
	}
	ev := aggregations.Event{TS: ps.dec.TS, Seq: seq, Value: f.Value(&ps.dec), Str: f.Str(&ps.dec), Bucket: f.Bucket(&ps.dec)}
	tile, ok := es.series[i].Apply(f.Window, ev, now)
	if !ok {
		ps.metrics.droppedLate[i].Inc()
		return
	}
	w.markModified(ps, es)
	ps.markDirty(dirtyTile{es, i, tile})
	if ev.TS > ps.newest[i] {
		ps.newest[i] = ev.TS
	}
}

// markReplayed marks dirty the tiles of es that the decoded event ps.dec,
// a replayed record already in state, counted toward, so that their
// current values are published again.
func markReplayed(ps *partState, es *entityState) {
	for i := range ps.plan.Features {
		f := &ps.plan.Features[i]
		if !f.Counts(&ps.dec) {
			continue
		}
		ps.markDirty(dirtyTile{es, i, f.Window.TileStart(ps.dec.TS)})
		if f.Window.Lifetime() {
			ps.markDirty(dirtyTile{es, i, aggregations.BaseStart})
		}
	}
}

// markDirty marks tile d to be published, keeping the newest source record
// timestamp folded into it (ps.recTS, when not 0) since the last
// publication: its feature-log record's Kafka timestamp, from which lookup
// replicas measure end-to-end latency.
func (ps *partState) markDirty(d dirtyTile) {
	if ps.quiet {
		return // below the published mark
	}
	if cur, ok := ps.dirty[d]; !ok || ps.recTS > cur {
		ps.dirty[d] = ps.recTS
	}
}

func (w *Worker) markModified(ps *partState, es *entityState) {
	if !es.modified {
		es.modified = true
		ps.modified = append(ps.modified, es)
	}
}

// setLag records the partition's consumer lag after its staged batch. The
// gauge child is resolved at the first batch (not at assignment, so that no
// lag is reported before it is known) and deleted on revocation.
func (w *Worker) setLag(ps *partState, highWatermark int64) {
	if ps.lag == nil {
		ps.lag = w.m.ConsumerLag.WithLabelValues(ps.tp.topic, strconv.Itoa(int(ps.tp.partition)))
	}
	ps.lag.Set(float64(highWatermark - ps.staged))
}

// entity returns the cached state of key: from the entities touched since
// the last publication, else from those kept from earlier intervals (the
// state committed to Pebble: every batch commits what it changed), else
// loaded from Pebble.
func (w *Worker) entity(ps *partState, key string) (*entityState, error) {
	if es, ok := ps.cache[key]; ok {
		return es, nil
	}
	if es, ok := ps.kept[key]; ok {
		ps.cache[key] = es
		return es, nil
	}
	es, err := w.load(ps.tp, ps.plan, key, &ps.scratch)
	if err != nil {
		return nil, err
	}
	ps.ords++
	es.ord = ps.ords
	ps.singleLoads++
	ps.cache[key] = es
	return es, nil
}
