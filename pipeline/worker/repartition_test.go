package worker

import (
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMarksSkipDuplicates(t *testing.T) {
	m := newMarks()
	steps := []struct {
		p    int32
		off  int64
		want bool
		why  string
	}{
		{0, 5, true, "first record of partition 0"},
		{0, 5, false, "exact duplicate (producer retry)"},
		{1, 2, true, "another source partition has its own mark"},
		{0, 3, false, "below the mark: already applied"},
		{0, 6, true, "next offset"},
		{1, 2, false, "duplicate in partition 1"},
		{0, 9, true, "offsets need not be contiguous (records of other keys go elsewhere)"},
	}
	for _, s := range steps {
		if got := m.admit(s.p, s.off); got != s.want {
			t.Errorf("admit(%d, %d) = %v, want %v: %s", s.p, s.off, got, s.want, s.why)
		}
	}
	if len(m.dirty) != 2 || m.hwm[0] != 9 || m.hwm[1] != 2 {
		t.Errorf("marks %v dirty %v, want 0→9, 1→2, both dirty", m.hwm, m.dirty)
	}
}

// TestMarksExactlyOnceUnderZombieWriters simulates the records of one source
// partition reaching one repartition partition from several writers: the
// owner, owners restarted from the committed offset, and zombies (earlier
// owners that lost the partition and still flush what they had). Each
// writer produces, in order, a contiguous run of the partition's records
// (those whose new key lands in this repartition partition) from the
// committed offset it started at; everything below a committed offset was
// acknowledged, so is in the log, before a writer starting there writes.
// Whatever the interleaving, the marks apply every record exactly once.
func TestMarksExactlyOnceUnderZombieWriters(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		const n = 200
		// The offsets of the source partition whose records land here.
		var offs []int64
		for o := int64(0); len(offs) < n; o++ {
			if rng.IntN(3) > 0 {
				offs = append(offs, o)
			}
		}
		var log []int64 // the repartition partition, in log order
		type writer struct{ next, end int }
		owner := &writer{next: 0, end: n}
		ws := []*writer{owner}
		committed, rebalances := 0, 0
		for {
			var active []*writer
			for _, w := range ws {
				if w.next < w.end {
					active = append(active, w)
				}
			}
			if len(active) == 0 {
				if committed >= n {
					break
				}
				owner = &writer{next: committed, end: n} // a restart
				ws = append(ws, owner)
				continue
			}
			w := active[rng.IntN(len(active))]
			log = append(log, offs[w.next]) // acknowledged: in the log
			w.next++
			if w == owner && (rng.IntN(4) == 0 || w.next == w.end) {
				committed = w.next // everything it wrote is in the log
			}
			if rebalances < 20 && rng.IntN(30) == 0 {
				// The owner loses the partition: a zombie that still
				// flushes a few records, while the next owner starts at
				// the committed offset.
				owner.end = min(owner.end, owner.next+rng.IntN(20))
				owner = &writer{next: committed, end: n}
				ws = append(ws, owner)
				rebalances++
			}
		}
		m := newMarks()
		applied := map[int64]int{}
		for _, o := range log {
			if m.admit(3, o) {
				applied[o]++
			}
		}
		for _, o := range offs {
			if applied[o] != 1 {
				t.Fatalf("seed %d: offset %d applied %d times (log of %d records with duplicates)", seed, o, applied[o], len(log))
			}
		}
		if len(applied) != n {
			t.Fatalf("seed %d: %d offsets applied, want %d", seed, len(applied), n)
		}
	}
}

func TestOrigin(t *testing.T) {
	r := &kgo.Record{Partition: 4, Offset: 1234, Value: []byte("v")}
	rec := repartitionRecordFor("featurepipe.repartition.s.e", r, "k")
	p, off, err := origin(rec)
	if err != nil || p != 4 || off != 1234 || string(rec.Key) != "k" || string(rec.Value) != "v" {
		t.Fatalf("origin = %d %d %v, record %q %q", p, off, err, rec.Key, rec.Value)
	}
	for _, hs := range [][]kgo.RecordHeader{
		nil,
		{{Key: HeaderSourcePartition, Value: []byte("4")}},
		{{Key: HeaderSourcePartition, Value: []byte("x")}, {Key: HeaderSourceOffset, Value: []byte("1")}},
		{{Key: HeaderSourcePartition, Value: []byte("4")}, {Key: HeaderSourceOffset, Value: []byte("-1")}},
	} {
		if _, _, err := origin(&kgo.Record{Headers: hs}); err == nil {
			t.Errorf("origin(%v) accepted", hs)
		}
	}
}
