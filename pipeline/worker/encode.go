package worker

import (
	"runtime"
	"slices"
	"strings"

	"github.com/featurepipe/featurepipe/internal/keys"
)

// encodeChunk is the fewest entities a batch encodes per goroutine (see
// inChunks): below it, one goroutine encodes them all.
const encodeChunk = 512

// stateEncoder encodes a batch's modified entities (their Pebble keys and
// values) in parallel before the batch is staged: after a backlog's poll,
// most of them come from one partition, whose apply ran on one core, and
// their encoding is most of what the poll goroutine does before the
// commit. Its buffers are reused from batch to batch (up to
// encodeRetainBytes each, see release); only the poll goroutine uses it.
type stateEncoder struct {
	slabs [][]byte // one per chunk: keys and values one after the other
	spans []encodedSpan
	items []encodeItem
}

type encodedSpan struct{ slab, start, mid, end int }

type encodeItem struct {
	ps *partState
	es *entityState
}

// encode encodes the modified entities of the staged partitions, each
// partition's sorted by key first (Pebble's memtable inserts a batch in
// its order, and an insert just after the previous one starts its
// skiplist search from there, not from the top). entry(i) is then the
// i-th of them: the partitions in order, each one's entities in key order.
func (e *stateEncoder) encode(staged []*partState) {
	e.items = e.items[:0]
	for _, ps := range staged {
		slices.SortFunc(ps.modified, func(a, b *entityState) int { return strings.Compare(a.key, b.key) })
		for _, es := range ps.modified {
			e.items = append(e.items, encodeItem{ps, es})
		}
	}
	e.spans = slices.Grow(e.spans[:0], len(e.items))[:len(e.items)]
	if n := runtime.GOMAXPROCS(0); len(e.slabs) < n {
		e.slabs = append(e.slabs, make([][]byte, n-len(e.slabs))...)
	}
	inChunks(len(e.items), encodeChunk, len(e.slabs), func(g, lo, hi int) {
		slab := e.slabs[g][:0]
		for i := lo; i < hi; i++ {
			ps, es := e.items[i].ps, e.items[i].es
			start := len(slab)
			slab = keys.State(slab, ps.tp.topic, ps.tp.partition, es.key)
			mid := len(slab)
			slab = encodeEntity(slab, ps.plan, ps.seenID, es)
			e.spans[i] = encodedSpan{g, start, mid, len(slab)}
		}
		e.slabs[g] = slab
	})
}

// encodeRetainBytes bounds the slab a stateEncoder keeps between batches.
// A batch modifies about MaxPollRecords entities at most in a backlog
// (Worker.pollSize), of ~1 KiB each encoded (7 features of a 30-day
// history), so the default 20,000 keeps ~20 MiB, reused by every batch
// rather than allocated again; a larger slab (an unusual batch) is
// dropped after its batch is staged rather than held for good.
const encodeRetainBytes = 64 << 20

// release forgets the batch's entities and drops slabs above
// encodeRetainBytes, once the batch is staged (entry's slices are no
// longer valid).
func (e *stateEncoder) release() {
	clear(e.items)
	e.items = e.items[:0]
	for g, slab := range e.slabs {
		if cap(slab) > encodeRetainBytes {
			e.slabs[g] = nil
		}
	}
}

// entry returns the key and value of the i-th entity encode encoded, valid
// until the next encode or release.
func (e *stateEncoder) entry(i int) (key, value []byte) {
	s := e.spans[i]
	slab := e.slabs[s.slab]
	return slab[s.start:s.mid], slab[s.mid:s.end]
}
