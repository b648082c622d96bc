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
	"path/filepath"
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
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", dir, err)
	}
	fs := vfs.Default
	if o.FS != nil {
		fs = o.FS
	}
	removeIngestLeftovers(fs, dir)
	s := &Store{db: db, fs: fs, dir: dir, sync: pebble.Sync}
	if o.NoSync {
		s.sync = pebble.NoSync
	}
	return s, nil
}

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

// ingestPrefix names the sstables IngestSorted writes in the store's
// directory before ingesting them.
const ingestPrefix = "featurepipe-ingest-"

// IngestSorted writes the pairs fill passes to set, whose keys must be
// strictly increasing, into a new sstable in the store's directory and
// ingests it (pebble's DB.Ingest): the pairs skip the memtable and the WAL,
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
	if err := s.check(); err != nil {
		return 0, err
	}
	defer s.recoverFatal(&err)
	path := s.fs.PathJoin(s.dir, fmt.Sprintf("%s%d.sst", ingestPrefix, ingestSeq.Add(1)))
	f, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return 0, fmt.Errorf("ingest into %s: %w", s.dir, err)
	}
	defer s.fs.Remove(path) // after Ingest, a link (or a copy) of it is the store's
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), sstable.WriterOptions{TableFormat: s.db.TableFormat()})
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
				err = w.Set(r.buf[from:r.ends[i]], r.buf[r.ends[i]:r.ends[i+1]])
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
	if ferr != nil || err != nil {
		w.Close()
		if ferr != nil {
			return 0, ferr
		}
		return 0, fmt.Errorf("ingest into %s: %w", s.dir, err)
	}
	if err := w.Close(); err != nil { // closes (and syncs) the file
		return 0, fmt.Errorf("ingest into %s: finish sstable: %w", s.dir, err)
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.db.Ingest(ctx, []string{path}); err != nil {
		return 0, fmt.Errorf("ingest into %s: %w", s.dir, err)
	}
	return n, nil
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
