package aggregations

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
)

// Tile holds the IR of the events whose ts is in [Start, Start+Hop), plus Pending:
// events that were in the future (ts >= the clock) when applied. A pending event is
// folded only by reads whose T > its ts, which keeps the leading edge of the window
// exact even for events stamped after the worker's clock. Pending is nil when empty.
type Tile struct {
	Start   int64
	IR      IR
	Pending []Event
}

// BaseStart is the Start used for the lifetime Base pseudo-tile when a Series is
// published tile by tile. No real tile has this start.
const BaseStart int64 = math.MinInt64

// Series is one feature's state for one entity.
//
// Invariants: Tiles are sorted by Start ascending, without duplicates, and none has
// Start == BaseStart. Base is used by lifetime windows only: the merged IR of the
// events older than the kept tiles; finite windows leave it empty and ignore it.
//
// The zero Series is empty and ready to use. A Series is not safe for concurrent
// use, and owns the Pending slices of its tiles.
type Series struct {
	Tiles []Tile
	Base  IR
}

// search returns the index of the first tile with Start >= start, and whether that
// tile's Start equals start. It checks the newest tile first (most live events land
// there), then the oldest, then guesses the index as if the tiles were evenly spaced
// between the two (a window's tiles are multiples of its hop, and a busy entity has
// most of them) and checks the guess and its neighbour before a binary search
// between them. In a replay of history, whose events come in no time order, a
// binary search over a month of daily tiles read five or six tiles, each in its
// own cache line and most of them cache misses once the series outgrow the CPU's
// caches; the guess reads three or four (BenchmarkSearchCold). Cost: O(1) for
// evenly spaced tiles, O(log tiles) at worst.
func (s *Series) search(start int64) (int, bool) {
	n := len(s.Tiles)
	if n == 0 {
		return 0, false
	}
	if last := s.Tiles[n-1].Start; last == start {
		return n - 1, true
	} else if last < start {
		return n, false
	}
	first := s.Tiles[0].Start
	if start <= first {
		return 0, start == first
	}
	// Now first < start < last, so n >= 2 and the answer is in [1, n-1].
	// The guess g = (start-first)·(n-1)/(last-first) is in [0, n-2]; the
	// differences are taken unsigned, so no Start overflows them.
	hi64, lo64 := bits.Mul64(uint64(start)-uint64(first), uint64(n-1))
	q, _ := bits.Div64(hi64, lo64, uint64(s.Tiles[n-1].Start)-uint64(first)) // hi64 < divisor: q < n-1
	g := int(q)
	lo, hi := 1, n-1 // the answer is in [lo, hi]: Tiles[hi].Start > start
	switch gs := s.Tiles[g].Start; {
	case gs == start:
		return g, true
	case gs < start:
		if next := s.Tiles[g+1].Start; next >= start {
			return g + 1, next == start
		}
		lo = g + 2
	default:
		if g >= 1 {
			if prev := s.Tiles[g-1].Start; prev < start {
				return g, false
			} else if prev == start {
				return g - 1, true
			}
		}
		hi = g - 1
	}
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if s.Tiles[mid].Start < start {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, s.Tiles[lo].Start == start
}

// Apply adds e to the series. now is the caller's wall clock in milliseconds; pass
// NoClock in replays and backfills so that nothing is pending or dropped.
//
// It returns the Start of the tile it changed, or BaseStart when the event went into
// Base. applied=false when the window is finite and e is older than w.Horizon(now):
// the series is unchanged, and the caller counts and drops the event (tileStart is
// then the tile it would have gone to). Lifetime windows never drop: such events go
// into Base.
//
// An event with ts >= now goes to its tile's Pending; Apply also promotes that
// tile's pending events with ts < now into its IR. Cost: O(log tiles), plus a copy
// of the newer tiles when a tile is inserted. Adding to an existing tile with no
// pending events does not allocate.
func (s *Series) Apply(w Window, e Event, now int64) (tileStart int64, applied bool) {
	start := w.TileStart(e.TS)
	if start == BaseStart || (now != NoClock && start < w.Horizon(now)) {
		if !w.Lifetime() {
			return start, false
		}
		if w.heavyBuckets() {
			m := s.Base.mark()
			s.Base.update(e, w)
			s.Base.checkBudget(m, BaseStart)
			return BaseStart, true
		}
		s.Base.update(e, w)
		return BaseStart, true
	}
	i, found := s.search(start)
	if !found {
		s.Tiles = slices.Insert(s.Tiles, i, Tile{Start: start})
	}
	t := &s.Tiles[i]
	var m budgetMark
	heavy := w.heavyBuckets()
	if heavy {
		m = t.IR.mark()
	}
	if e.TS >= now {
		t.Pending = append(t.Pending, e)
		if len(t.Pending)%sizeCheckEvery == 0 {
			t.boundPending(w)
		}
	} else {
		t.IR.update(e, w)
	}
	if len(t.Pending) > 0 && now != NoClock {
		t.promote(w, now)
	}
	if heavy {
		t.IR.checkBudget(m, start)
	}
	return start, true
}

// PendingBytesBudget bounds the encoded size of a tile's pending events
// (events stamped at or after the writer's clock, see Apply), which a
// feature-log record carries with the tile: thousands of events stamped
// ahead on one hot key (a producer whose clock runs minutes ahead) would
// otherwise pass Kafka's default 1 MiB message. Every sizeCheckEvery
// pending events, Apply measures them (an upper bound of their encoding:
// each with its string and bucket key); past the budget it folds the
// earliest (by TS, then Seq) into the tile's IR until the rest are within
// half of it. Such an event counts at once: a read as of T before its
// time includes it (every read at or after its time is exact, as before).
// With the bucket budget (TileBytesBudget) a tile's record stays under
// about 800 KB.
const PendingBytesBudget = 256 << 10

// boundPending folds the earliest pending events into the IR while the
// pending events are past PendingBytesBudget (see there). Cost: linear in
// the pending events, once per sizeCheckEvery of them; a sort when it folds.
func (t *Tile) boundPending(w Window) {
	size := 0
	for _, p := range t.Pending {
		size += pendingLen(p, t.Start)
	}
	if size <= PendingBytesBudget {
		return
	}
	slices.SortFunc(t.Pending, func(a, b Event) int {
		if c := cmp.Compare(a.TS, b.TS); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	n := 0
	for ; n < len(t.Pending) && size > PendingBytesBudget/2; n++ {
		size -= pendingLen(t.Pending[n], t.Start)
		t.IR.update(t.Pending[n], w)
	}
	m := copy(t.Pending, t.Pending[n:])
	clear(t.Pending[m:])
	t.Pending = t.Pending[:m]
}

// pendingLen bounds what AppendTile writes for pending event p of a tile
// starting at start: exact for the numbers, and p's string and bucket key
// with their lengths (written only when some pending event of the tile has
// one).
func pendingLen(p Event, start int64) int {
	return varintLen(p.TS-start) + varintLen(p.Seq) + 8 + stringLen(p.Str) + stringLen(p.Bucket)
}

// promote moves the pending events with ts < now into the IR.
func (t *Tile) promote(w Window, now int64) {
	n := 0
	for _, p := range t.Pending {
		if p.TS < now {
			t.IR.update(p, w)
		} else {
			t.Pending[n] = p
			n++
		}
	}
	if n == 0 {
		t.Pending = nil
		return
	}
	clear(t.Pending[n:])
	t.Pending = t.Pending[:n]
}

// Read folds the window as of T: Base (lifetime windows only), plus the IR of every
// tile with w.Start(T) <= Start < T, plus those tiles' pending events with ts < T.
// Finalize the result with the feature's Kind. Read is exact when every event in
// those IRs has ts < T: when T is at or after every clock passed to Apply and Expire,
// or, with NoClock, when no event with ts >= T was applied to the tile holding T-1
// (see the package doc). Cost: O(log tiles + tiles in the window + their pending
// events); it does not allocate, except for a window with a sketch (see
// Window.For), whose result owns a new sketch.
func (s *Series) Read(w Window, T int64) IR {
	var ir IR
	if w.Lifetime() {
		ir.Merge(s.Base) // a copy: the result must not share Base's sketch
	}
	i, _ := s.search(w.Start(T))
	for ; i < len(s.Tiles) && s.Tiles[i].Start < T; i++ {
		t := &s.Tiles[i]
		ir.merge(&t.IR)
		for _, p := range t.Pending {
			if p.TS < T {
				ir.update(p, w)
			}
		}
	}
	return ir
}

// Expire removes the tiles with Start < w.Horizon(now), which no read at T >= now
// can touch. For lifetime windows the removed tiles (IR and pending events) are
// merged into Base instead. It appends the removed starts to dst and returns it, so
// that the caller can publish tombstones, and reports whether Base changed.
// Expire with NoClock removes nothing. It keeps the capacity of Tiles and does not
// allocate unless dst grows.
func (s *Series) Expire(w Window, now int64, dst []int64) (removed []int64, baseChanged bool) {
	if now == NoClock {
		return dst, false
	}
	n, _ := s.search(w.Horizon(now))
	if n == 0 {
		return dst, false
	}
	for i := range s.Tiles[:n] {
		t := &s.Tiles[i]
		dst = append(dst, t.Start)
		if !w.Lifetime() {
			continue
		}
		if !t.IR.Empty() || len(t.Pending) > 0 {
			baseChanged = true
		}
		if s.Base.Empty() {
			s.Base = t.IR // the tile goes: Base takes its sketch rather than a copy
		} else {
			s.Base.merge(&t.IR)
		}
		for _, p := range t.Pending {
			s.Base.update(p, w)
		}
	}
	if w.Lifetime() {
		s.Base.foldBuckets() // Base lives on: keep it within BucketsMax (bucket.go)
		if w.heavyBuckets() {
			s.Base.foldToBudget(BaseStart) // and within the tile budget
		}
	}
	m := copy(s.Tiles, s.Tiles[n:])
	clear(s.Tiles[m:])
	s.Tiles = s.Tiles[:m]
	return dst, baseChanged
}

// Tile returns the tile with that start, with a copy of its pending events, or
// ok=false if there is none. The returned IR shares its sketch (if any) with the
// series: encode or merge from it, do not update it. Tile(BaseStart) returns Tile{Start: BaseStart, IR:
// s.Base}, with ok=false when Base is empty.
func (s *Series) Tile(start int64) (Tile, bool) {
	if start == BaseStart {
		return Tile{Start: BaseStart, IR: s.Base}, !s.Base.Empty()
	}
	i, found := s.search(start)
	if !found {
		return Tile{}, false
	}
	t := s.Tiles[i]
	t.Pending = slices.Clone(t.Pending)
	return t, true
}

// SetTile inserts t, or replaces the tile with the same Start. SetTile with Start ==
// BaseStart sets Base to t.IR with t's pending events folded in. The series takes
// ownership of t.Pending. Used by the lookup service, which rebuilds series from
// published tiles.
func (s *Series) SetTile(t Tile) {
	if len(t.Pending) == 0 {
		t.Pending = nil
	}
	if t.Start == BaseStart {
		s.Base = t.IR
		for _, p := range t.Pending {
			s.Base.Update(p)
		}
		return
	}
	i, found := s.search(t.Start)
	if found {
		s.Tiles[i] = t
		return
	}
	s.Tiles = slices.Insert(s.Tiles, i, t)
}

// DeleteTile removes the tile with that start, if any; DeleteTile(BaseStart)
// empties Base.
func (s *Series) DeleteTile(start int64) {
	if start == BaseStart {
		s.Base = IR{}
		return
	}
	if i, found := s.search(start); found {
		s.Tiles = slices.Delete(s.Tiles, i, i+1)
	}
}
