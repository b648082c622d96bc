// Package state is featurepipe's Pebble store: one per process, holding a
// worker's tiles and input offsets or a lookup replica's view. The invariant
// every caller relies on: state and the offset it corresponds to are written
// in one Batch and become durable together, or not at all.
package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/keys"
)

// Options configure Open. The zero value is valid.
type Options struct {
	// FS is the filesystem Pebble uses. Default: the OS filesystem. Tests
	// pass vfs.NewMem or an errorfs-wrapped FS to inject faults.
	FS vfs.FS
	// NoSync makes Commit skip the fsync of the WAL. Default false: every
	// Commit is durable across a machine crash. With NoSync a commit still
	// survives a process kill (it is in the OS page cache) but not power loss.
	NoSync bool
	// CacheBytes is the block cache size: uncompressed SST blocks kept for
	// point reads (an entity's state, a view's value). Default 64 MiB.
	// Pebble charges its memtables against the same cache, so Open sizes
	// Pebble's cache to CacheBytes plus the memtables' most
	// (MemTableStopWrites × MemTableBytes): CacheBytes stays for blocks.
	// Without that, 64 MiB memtables took the whole 64 MiB and every read
	// of a key already flushed decompressed its block again (issue 18: the
	// cost per event grew with the number of entities once the state
	// outgrew one memtable).
	//
	// Pebble's memory is bounded by configuration, whatever the number of
	// entities: CacheBytes + MemTableStopWrites × MemTableBytes, plus the
	// index and bloom filter blocks of open SSTs (cached in the same cache).
	CacheBytes int64
	// MemTableBytes is the size of a memtable (the WAL rotates when one
	// fills). Default 64 MiB: large batches of tile updates fill Pebble's
	// 4 MiB default quickly, and every flush costs a compaction later.
	MemTableBytes uint64
	// Log receives Pebble's errors and its background events: background
	// errors (a failed flush or compaction), data corruption, slow disk
	// operations, write stalls, low disk space (see eventListener).
	// Default: a no-op logger.
	Log *zap.Logger
	// Registerer receives featurepipe_state_events_total{store,event},
	// counting those events. Default: none (counted, not exported).
	Registerer prometheus.Registerer
	// Name labels this store in logs and metrics ("worker", "view").
	// Default: the directory's base name.
	Name string
	// Merger is the store's merge operator, for writes with Batch.Merge.
	// Default: Pebble's (concatenation). Pebble records its name in the
	// store and refuses to open the store with another one: a store is
	// always opened with the merger it was created with (the lookup view's
	// is lookup.ViewMerger; see lookup.OpenStore).
	Merger *pebble.Merger
}

// MemTableStopWrites is the number of memtables (the mutable one and those
// waiting to be flushed) at which Pebble stops writes until a flush ends:
// Pebble's default, stated here because Open reserves that much memory in
// the cache besides Options.CacheBytes.
const MemTableStopWrites = 2

// ErrFailed is returned (wrapped) by every operation after Pebble reported a
// fatal error, e.g. a WAL write that failed on a broken disk. Nothing was
// committed by the failing call; the process should stop and be restarted on
// a healthy disk, where it resumes from the last committed state.
var ErrFailed = errors.New("state store failed")

// Store is an open Pebble database. Safe for concurrent use.
type Store struct {
	db     *pebble.DB
	fs     vfs.FS
	dir    string
	sync   *pebble.WriteOptions
	failed atomic.Pointer[error]
	merger string // the name of Options.Merger (Pebble's when none)
}

// fatal is what Pebble's Fatalf panics with (see quietLogger): the calls
// below turn it back into an error and poison the store.
type fatal struct{ msg string }

func (s *Store) recoverFatal(err *error) {
	r := recover()
	if r == nil {
		return
	}
	f, ok := r.(fatal)
	if !ok {
		panic(r)
	}
	e := fmt.Errorf("%w: %s: %s", ErrFailed, s.dir, f.msg)
	s.failed.CompareAndSwap(nil, &e)
	*err = e
}

func (s *Store) check() error {
	if e := s.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, o Options) (*Store, error) {
	if o.CacheBytes <= 0 {
		o.CacheBytes = 64 << 20
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = 64 << 20
	}
	cache := pebble.NewCache(o.CacheBytes + MemTableStopWrites*int64(o.MemTableBytes))
	defer cache.Unref()
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Name == "" {
		o.Name = filepath.Base(dir)
	}
	log := o.Log.With(zap.String("store", o.Name), zap.String("dir", dir))
	events, err := stateEvents(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", dir, err)
	}
	popts := &pebble.Options{Cache: cache, Logger: pebbleLogger{log}, MemTableSize: o.MemTableBytes,
		MemTableStopWritesThreshold: MemTableStopWrites}
	// Bloom filters (10 bits per key, ~1% false positives) on every level:
	// a point read of a key a table does not hold (an entity's first event,
	// a view's new key) skips the table's data block instead of reading
	// and decompressing it. Pebble's default is none. Tables written
	// before stay readable; they get filters when compacted.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	el := eventListener(log, events.MustCurryWith(prometheus.Labels{"store": o.Name}))
	popts.EventListener = &el
	if o.FS != nil {
		popts.FS = o.FS
	}
	if o.Merger == nil {
		o.Merger = pebble.DefaultMerger
	}
	popts.Merger = o.Merger
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", dir, err)
	}
	fs := vfs.Default
	if o.FS != nil {
		fs = o.FS
	}
	removeIngestLeftovers(fs, dir)
	s := &Store{db: db, fs: fs, dir: dir, sync: pebble.Sync, merger: o.Merger.Name}
	if o.NoSync {
		s.sync = pebble.NoSync
	}
	return s, nil
}

// StoredMergerName returns the name of the merge operator the store in dir
// was last opened with (what Open checks Options.Merger against), read from
// its OPTIONS file without opening it; "" when dir holds no store. fs nil:
// the OS filesystem.
func StoredMergerName(dir string, fs vfs.FS) (string, error) {
	if fs == nil {
		fs = vfs.Default
	}
	if _, err := fs.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	desc, err := pebble.Peek(dir, fs)
	if err != nil {
		return "", fmt.Errorf("read state store %s: %w", dir, err)
	}
	if !desc.Exists || desc.OptionsFilename == "" {
		return "", nil
	}
	f, err := fs.Open(desc.OptionsFilename)
	if err != nil {
		return "", fmt.Errorf("read state store %s: %w", dir, err)
	}
	defer f.Close()
	text, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("read state store %s: %w", dir, err)
	}
	for line := range strings.Lines(string(text)) {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "merger="); ok {
			return name, nil
		}
	}
	return "", fmt.Errorf("read state store %s: no merger in %s", dir, desc.OptionsFilename)
}

// MergerName is the name of the store's merge operator (Options.Merger).
func (s *Store) MergerName() string { return s.merger }

// DB exposes the underlying Pebble database for iteration and checkpoints.
func (s *Store) DB() *pebble.DB { return s.db }

// Close closes the store; it must not be used afterwards. A failed store is
// abandoned, not closed: Pebble's state after a fatal error is undefined.
func (s *Store) Close() (err error) {
	if err := s.check(); err != nil {
		return err
	}
	defer s.recoverFatal(&err)
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state store %s: %w", s.dir, err)
	}
	return nil
}

// Get appends the value of key to dst. found is false when the key is absent.
func (s *Store) Get(dst, key []byte) (val []byte, found bool, err error) {
	if err := s.check(); err != nil {
		return dst, false, err
	}
	defer s.recoverFatal(&err)
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return dst, false, nil
	}
	if err != nil {
		return dst, false, fmt.Errorf("state get: %w", err)
	}
	dst = append(dst, v...)
	return dst, true, closer.Close()
}

// GetOffset reads an offset value (see keys.Offset, keys.Published).
// found is false when no offset was ever stored.
func (s *Store) GetOffset(key []byte) (offset int64, found bool, err error) {
	var buf [8]byte
	v, found, err := s.Get(buf[:0], key)
	if err != nil || !found {
		return 0, found, err
	}
	off, err := keys.U64(v)
	return off, true, err
}

// NewBatch returns a write-only batch. Cheap; commit with Commit.
func (s *Store) NewBatch() *pebble.Batch { return s.db.NewBatch() }

// Commit applies b atomically (and durably unless Options.NoSync) and closes
// it. On error nothing of b is visible; after an ErrFailed error the store is
// unusable.
func (s *Store) Commit(b *pebble.Batch) error { return s.commit(b, s.sync) }

// CommitNoSync applies b atomically without waiting for an fsync: for writes
// whose loss on a machine crash is harmless (they are recomputed).
func (s *Store) CommitNoSync(b *pebble.Batch) error { return s.commit(b, pebble.NoSync) }

func (s *Store) commit(b *pebble.Batch, opts *pebble.WriteOptions) (err error) {
	if err := s.check(); err != nil {
		b.Close()
		return err
	}
	defer s.recoverFatal(&err)
	if err := b.Commit(opts); err != nil {
		b.Close()
		return fmt.Errorf("commit state batch: %w", err)
	}
	return b.Close()
}

// ingestPrefix names the sstables IngestSorted and NewIngestTable write in
// the store's directory before ingesting them.
const ingestPrefix = "featurepipe-ingest-"

// IngestTable is one sstable being written in the store's directory for
// IngestTables: keys strictly increasing, set with Set, finished with
// Finish. Not safe for concurrent use; distinct tables may be written by
// distinct goroutines at once. A table not given to IngestTables must be
// removed with Discard.
type IngestTable struct {
	s      *Store
	path   string
	w      *sstable.Writer
	n      int64
	first  []byte
	prev   []byte
	done   bool // Finish or Discard was called
	closed bool // w is closed
}

// IngestTableOptions configure NewIngestTable. The zero value is valid.
type IngestTableOptions struct {
	// Uncompressed writes the table's blocks without compression. Default
	// false: Snappy, as Pebble writes its own tables. Uncompressed saves
	// the compression's CPU (the largest part of writing a table) at the
	// cost of the bytes the compression would have saved on disk until a
	// compaction rewrites the table: Pebble compresses every table it
	// writes, so a compaction that includes an ingested table writes its
	// keys compressed (an ingested table that no compaction touches stays
	// as it is).
	Uncompressed bool
}

// NewIngestTable creates an empty sstable in the store's directory, in the
// store's table format, for IngestTables. Cost: one file; the pairs set are
// written block by block (block-compressed unless o.Uncompressed, with
// checksums) as they come.
func (s *Store) NewIngestTable(o IngestTableOptions) (*IngestTable, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	path := s.fs.PathJoin(s.dir, fmt.Sprintf("%s%d.sst", ingestPrefix, ingestSeq.Add(1)))
	f, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("ingest into %s: %w", s.dir, err)
	}
	// The table names the store's merger, as Pebble's own tables do: a
	// table naming another is refused when read.
	wo := sstable.WriterOptions{TableFormat: s.db.TableFormat(), MergerName: s.merger}
	if o.Uncompressed {
		wo.Compression = sstable.NoCompression
	}
	return &IngestTable{s: s, path: path, w: sstable.NewWriter(objstorageprovider.NewFileWritable(f), wo)}, nil
}

// Set appends a pair; key must be greater than the previous key set. The
// table copies key and value before Set returns.
func (t *IngestTable) Set(key, value []byte) error {
	if t.done {
		return fmt.Errorf("ingest into %s: set after Finish or Discard", t.s.dir)
	}
	if t.n > 0 && bytes.Compare(key, t.prev) <= 0 {
		return fmt.Errorf("ingest into %s: key %q after %q: keys must be strictly increasing", t.s.dir, key, t.prev)
	}
	if err := t.w.Set(key, value); err != nil {
		return fmt.Errorf("ingest into %s: %w", t.s.dir, err)
	}
	if t.n == 0 {
		t.first = append(t.first[:0], key...)
	}
	t.prev = append(t.prev[:0], key...)
	t.n++
	return nil
}

// Len is the number of pairs set.
func (t *IngestTable) Len() int64 { return t.n }

// Finish completes the table (and syncs its file); no Set may follow.
func (t *IngestTable) Finish() error {
	if t.done {
		return fmt.Errorf("ingest into %s: Finish after Finish or Discard", t.s.dir)
	}
	t.done, t.closed = true, true
	if err := t.w.Close(); err != nil {
		return fmt.Errorf("ingest into %s: finish sstable: %w", t.s.dir, err)
	}
	return nil
}

// Discard removes the table's file (it is never ingested). It may be
// called at any time, also after Finish, and more than once.
func (t *IngestTable) Discard() {
	t.done = true
	if !t.closed {
		t.closed = true
		_ = t.w.Close()
	}
	_ = t.s.fs.Remove(t.path)
}

// IngestTables ingests the finished tables ts in one Pebble Ingest (one
// atomic step: every pair becomes visible at once, or none), after which
// an ingested key replaces the store's value of that key; empty tables are
// skipped. The tables' key ranges must not overlap. It removes the tables'
// files in every case (Pebble keeps hard links, or copies where the
// filesystem has none) and returns the number of pairs ingested. The pairs
// skip the memtable and the WAL, and the flushes and compactions batches
// of the same pairs would cost. The ingested tables are durable when
// IngestTables returns (Pebble syncs them and their manifest entry),
// whatever Options.NoSync.
func (s *Store) IngestTables(ctx context.Context, ts []*IngestTable) (n int64, err error) {
	defer func() {
		for _, t := range ts {
			t.Discard()
		}
	}()
	if err := s.check(); err != nil {
		return 0, err
	}
	defer s.recoverFatal(&err)
	var paths []string
	sorted := make([]*IngestTable, 0, len(ts))
	for _, t := range ts {
		if t.s != s {
			return 0, fmt.Errorf("ingest into %s: a table of another store", s.dir)
		}
		if !t.done || !t.closed {
			return 0, fmt.Errorf("ingest into %s: a table not finished", s.dir)
		}
		if t.n > 0 {
			sorted = append(sorted, t)
		}
	}
	slices.SortFunc(sorted, func(a, b *IngestTable) int { return bytes.Compare(a.first, b.first) })
	for i, t := range sorted {
		if i > 0 && bytes.Compare(t.first, sorted[i-1].prev) <= 0 {
			return 0, fmt.Errorf("ingest into %s: tables overlap: %q..%q and %q..%q", s.dir, sorted[i-1].first, sorted[i-1].prev, t.first, t.prev)
		}
		paths = append(paths, t.path)
		n += t.n
	}
	if len(paths) == 0 {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.db.Ingest(ctx, paths); err != nil {
		return 0, fmt.Errorf("ingest into %s: %w", s.dir, err)
	}
	return n, nil
}

// IngestSorted writes the pairs fill passes to set, whose keys must be
// strictly increasing, into a new sstable in the store's directory and
// ingests it (see IngestTables): the pairs skip the memtable and the WAL,
// and the flushes and compactions that batches of the same pairs would
// cost. An ingested key replaces the store's value of that key. It returns
// the number of pairs ingested.
//
// All or nothing: when fill or set fails, nothing is ingested and the file is
// removed. The ingested table is durable when IngestSorted returns (Pebble
// syncs it and its manifest entry), whatever Options.NoSync. Cost: one write
// of the pairs (block-compressed) plus a hard link, or a copy where the
// filesystem has no links.
func (s *Store) IngestSorted(ctx context.Context, fill func(set func(key, value []byte) error) error) (n int64, err error) {
	t, err := s.NewIngestTable(IngestTableOptions{})
	if err != nil {
		return 0, err
	}
	defer t.Discard()
	// The sstable writer (block compression, checksums, writes) runs in its
	// own goroutine, fed runs of pairs, so that it overlaps with fill.
	runs := make(chan *ingestRun, 4)
	free := make(chan *ingestRun, 6)
	for range cap(free) {
		free <- &ingestRun{}
	}
	werr := make(chan error, 1)
	go func() {
		var err error
		for r := range runs {
			for i := 0; err == nil && i < len(r.ends); i += 2 {
				from := 0
				if i > 0 {
					from = r.ends[i-1]
				}
				err = t.Set(r.buf[from:r.ends[i]], r.buf[r.ends[i]:r.ends[i+1]])
			}
			r.buf, r.ends = r.buf[:0], r.ends[:0]
			free <- r
		}
		werr <- err
	}()
	var prev []byte
	cur := <-free
	ferr := fill(func(key, value []byte) error {
		if n > 0 && bytes.Compare(key, prev) <= 0 {
			return fmt.Errorf("ingest into %s: key %q after %q: keys must be strictly increasing", s.dir, key, prev)
		}
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		cur.buf = append(cur.buf, key...)
		cur.ends = append(cur.ends, len(cur.buf))
		cur.buf = append(cur.buf, value...)
		cur.ends = append(cur.ends, len(cur.buf))
		prev = append(prev[:0], key...)
		n++
		if len(cur.buf) >= ingestRunBytes {
			runs <- cur
			cur = <-free
		}
		return nil
	})
	runs <- cur
	close(runs)
	err = <-werr
	if ferr != nil {
		return 0, ferr
	}
	if err != nil {
		return 0, err
	}
	if err := t.Finish(); err != nil {
		return 0, err
	}
	return s.IngestTables(ctx, []*IngestTable{t})
}

// ingestRun is a run of pairs IngestSorted passes to its sstable writer:
// ends holds, for each pair, the end of its key and of its value in buf.
type ingestRun struct {
	buf  []byte
	ends []int
}

// ingestRunBytes is the size of an ingestRun.
const ingestRunBytes = 256 << 10

// ingestSeq numbers IngestSorted's files within the process.
var ingestSeq atomic.Uint64

// removeIngestLeftovers removes sstables IngestSorted wrote but did not
// ingest before the process died.
func removeIngestLeftovers(fs vfs.FS, dir string) {
	names, err := fs.List(dir)
	if err != nil {
		return
	}
	for _, name := range names {
		if strings.HasPrefix(name, ingestPrefix) {
			_ = fs.Remove(fs.PathJoin(dir, name))
		}
	}
}

// pebbleLogger logs Pebble's informational messages at debug level and its
// errors at error level. Pebble expects Fatalf not to return; instead of
// exiting the process it panics with a fatal value that the Store's calls
// recover into ErrFailed. A fatal error in a Pebble background goroutine
// (flush, compaction) still crashes the process, which then restarts from
// its last committed state like after kill -9.
type pebbleLogger struct{ log *zap.Logger }

func (l pebbleLogger) Infof(format string, args ...interface{}) {
	if ce := l.log.Check(zap.DebugLevel, "pebble"); ce != nil {
		ce.Write(zap.String("msg", fmt.Sprintf(format, args...)))
	}
}

func (l pebbleLogger) Errorf(format string, args ...interface{}) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...interface{}) {
	panic(fatal{msg: fmt.Sprintf(format, args...)})
}
