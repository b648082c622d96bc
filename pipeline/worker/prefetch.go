package worker

import (
	"errors"
	"fmt"
	"runtime"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// A partition's next batch prefetches (Worker.prefetch) when its last
// batch loaded at least prefetchMinLoads entities from Pebble, and at least
// one per prefetchRecordsPerLoad records that reached an entity: below
// that, the extra decode of every record costs about what loading on two
// cores saves (a load, a point read and a decode of the entity's tiles,
// costs a few µs; a record's decode a tenth of a µs on the fast path, the
// fixed writer schema or a known one; a generic goavro decode, several
// µs, makes the pass dearer). See prefetchNext.
const (
	prefetchMinLoads       = 16
	prefetchRecordsPerLoad = 8
)

// prefetchNext reports whether a partition whose batch passed touches
// records to its entities and loaded loads entities should prefetch for its
// next batch. loads also counts a bootstrap's loads (Worker.entity loads
// for both): a bootstrap may make the next batch prefetch for nothing,
// which costs its decode pass.
func prefetchNext(touches, loads int) bool {
	return loads >= prefetchMinLoads && loads*prefetchRecordsPerLoad >= touches
}

// prefetch loads, in parallel and in key order, the state of the entities
// that records (one partition's batch, from ps.next on) will touch and that
// neither entity cache holds, into ps.cache: the entities Worker.entity
// would load one at a time, in the partition's single goroutine, as the
// apply reaches them.
//
// Why: a poll's records often come from one partition (franz-go hands out a
// fetch's partitions in turn, and a backlog's partition fills a poll), so
// a batch's apply runs on one core, and once the entities outnumber the
// caches (MaxCachedEntities) most of its time goes to point reads of
// evicted entities. Those reads are independent, so they run on up to
// GOMAXPROCS goroutines (divided among the partitions applied at once),
// each over a contiguous run of the sorted keys (Pebble's blocks and
// memtable nodes are then read in order).
//
// It runs for a partition's first batch, and then only when the previous
// batch loaded enough entities (partState.skipPrefetch: a stream whose
// entities stay cached pays nothing); it loads only when at least
// prefetchMinLoads are missing. Cost: one more decode per record (for its
// entity key), and a map and slice of the missing keys.
//
// It loads the entities of exactly the records applyPartition passes to
// entity, with entity's load, so the batch's state is the same; only the
// entities' ord (and so the order of their tiles in a publication,
// groupedDirty) follows key order rather than first touch. Records the
// apply reaches no entity for are skipped the same way: a repartition
// record without its origin headers or below the marks, a re-key history
// record below the published offset, a rejected record. At a temporary
// rejection (a writer schema the registry could not serve) the pass
// stops, leaving the rest to the apply, which asks the registry again and
// fails the batch if it still cannot serve it. A failed load fails the
// batch, as it would in entity.
func (w *Worker) prefetch(ps *partState, records []*kgo.Record, now int64) error {
	plan := ps.plan
	if ps.skipPrefetch || len(plan.Features) == 0 || len(records) == 0 {
		return nil
	}
	if ps.onlyRekeyed(records[len(records)-1].Offset) {
		return nil // only re-keyed history: no state (applyPartition)
	}
	missing := make(map[string]struct{})
	var hwm map[int32]int64 // the repartition marks as the apply advances them
	for _, r := range records {
		if r.Offset < ps.next {
			continue
		}
		// applyPartition's skips, in its order.
		replay := r.Offset < ps.applyFrom
		if plan.Repartition != nil {
			sp, soff, err := origin(r)
			if err != nil {
				continue
			}
			if !replay {
				if hwm == nil {
					hwm = make(map[int32]int64)
				}
				if ps.marks.covers(sp, soff, hwm) {
					continue // a duplicate: marks.admit refuses it
				}
				hwm[sp] = soff
			}
		}
		rej := w.decoder.Decode(plan, r.Key, r.Value, now, &ps.dec)
		if rej != nil && rej.Temporary {
			break
		}
		if ps.onlyRekeyed(r.Offset) {
			continue
		}
		if rej != nil {
			continue
		}
		k := ps.dec.Key
		if _, ok := ps.cache[k]; ok {
			continue
		}
		if _, ok := ps.kept[k]; ok {
			continue
		}
		missing[k] = struct{}{}
	}
	if len(missing) < prefetchMinLoads {
		return nil
	}
	sorted := make([]string, 0, len(missing))
	for k := range missing {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	loaded := make([]*entityState, len(sorted))
	// The partitions of this poll apply at once (Worker.apply), each
	// possibly prefetching: together they use about GOMAXPROCS goroutines.
	errs := make([]error, max(1, runtime.GOMAXPROCS(0)/max(1, w.applying)))
	inChunks(len(sorted), 1, len(errs), func(g, lo, hi int) {
		var sc loadScratch
		for i := lo; i < hi; i++ {
			es, err := w.load(ps.tp, plan, sorted[i], &sc)
			if err != nil {
				errs[g] = err
				return
			}
			loaded[i] = es
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, es := range loaded {
		ps.ords++
		es.ord = ps.ords
		ps.cache[sorted[i]] = es
	}
	ps.prefetchLoads += len(sorted)
	return nil
}

// loadScratch is load's reusable key and value buffers.
type loadScratch struct{ key, val []byte }

// load reads the state of key from Pebble: a new entityState (ord unset),
// with empty series when the entity has none yet. Safe for concurrent use
// with distinct scratches.
func (w *Worker) load(tp topicPartition, plan *events.Plan, key string, sc *loadScratch) (*entityState, error) {
	sc.key = keys.State(sc.key[:0], tp.topic, tp.partition, key)
	val, found, err := w.o.Store.Get(sc.val[:0], sc.key)
	if err != nil {
		return nil, fmt.Errorf("load state of %q in %s/%d: %w", key, tp.topic, tp.partition, err)
	}
	sc.val = val
	es := &entityState{key: key}
	if !found {
		es.series = make([]aggregations.Series, len(plan.Features))
		return es, nil
	}
	if err := decodeEntity(val, plan, es); err != nil {
		return nil, fmt.Errorf("%s/%d: %w", tp.topic, tp.partition, err)
	}
	return es, nil
}
