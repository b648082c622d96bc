// Package snapshot stores versioned, immutable snapshots of worker state in a
// Backend (a directory, DirBackend, given by --snapshots DIR, or an
// S3-compatible bucket, S3Backend, given by --snapshots s3://bucket/prefix)
// and loads them back.
//
// A snapshot is a set of SST files, one per source partition, plus a
// manifest. Layout in the backend:
//
//	<id>/manifest.json           written last, atomically
//	<id>/<topic>-<partition>.sst state keys of one source partition
//
// The manifest is the commit point: a snapshot without one does not exist,
// so a writer that crashes mid-way leaves only invisible garbage (see Prune).
// Nothing is ever modified in place. Every file is listed in the manifest
// with its size and SHA-256, and is verified before it is loaded; a corrupt
// or partial snapshot is reported as a Problem and skipped in favour of an
// older one, never loaded.
package snapshot

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/cockroachdb/pebble/v2"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRetain is the number of snapshots Prune keeps per source partition
// when NewStore is given retain <= 0.
const DefaultRetain = 5

// defaultGarbageGrace is how old a snapshot without a valid manifest must be
// (by the time in its id) before Prune deletes it: a younger one may be a
// Write still in progress.
const defaultGarbageGrace = 24 * time.Hour

// Store writes, lists, verifies, loads and prunes snapshots in a Backend. It
// holds no state besides its configuration: any number of Stores, in any
// number of processes, may share one Backend. Safe for concurrent use.
type Store struct {
	b            Backend
	retain       int
	garbageGrace time.Duration
	now          func() time.Time
}

// NewStore returns a Store on b that keeps the newest retain snapshots of
// every source partition when pruning (DefaultRetain, 5, when retain <= 0).
func NewStore(b Backend, retain int) *Store {
	if retain <= 0 {
		retain = DefaultRetain
	}
	return &Store{b: b, retain: retain, garbageGrace: defaultGarbageGrace, now: time.Now}
}

// PartitionData is the state of one source partition to snapshot.
type PartitionData struct {
	Topic        string
	Partition    int32
	NextOffset   int64 // next source offset to apply: see SourcePartition
	MaxEventTime int64 // highest event time in the state, ms
	// Iter yields the partition's key/value pairs in strictly increasing key
	// order (bytes.Compare), e.g. a Pebble iterator over
	// keys.StatePartition bounds, run on a pebble.Snapshot so that the state
	// matches NextOffset. Keys and values may be reused after yield returns.
	// Iter returns the iteration's error; it must stop when yield returns
	// false.
	Iter func(yield func(key, value []byte) bool) error
}

// Write creates a snapshot of parts described by m and returns its manifest.
//
// From m it takes Worker, Features and FeatureLog as given; ID and CreatedAt
// when set (otherwise CreatedAt = now, ID = NewID(Worker, CreatedAt)).
// Sources and Files are ignored and filled in from parts. m is not modified.
//
// For each part (at most one per topic/partition) Write builds an SST in a
// temporary local file (os.TempDir, i.e. $TMPDIR: it needs room for the
// largest partition), uploads it while computing its SHA-256, then uploads
// the manifest last. Until the manifest is in place the snapshot does not
// exist; on failure Write deletes what it uploaded (best effort) and returns
// an error. Cost: one sequential pass over each partition, one local write
// and one read of each SST.
func (s *Store) Write(ctx context.Context, m Manifest, parts []PartitionData) (*Manifest, error) {
	if m.CreatedAt.IsZero() {
		m.CreatedAt = s.now().UTC()
	}
	if m.ID == "" {
		m.ID = NewID(m.Worker, m.CreatedAt)
	}
	if err := checkID(m.ID); err != nil {
		return nil, fmt.Errorf("snapshot: write: %w", err)
	}
	m.Features = slices.Clone(m.Features)
	m.FeatureLog = slices.Clone(m.FeatureLog)
	m.Sources = make([]SourcePartition, 0, len(parts))
	m.Files = make([]FileRef, 0, len(parts))

	parts = slices.Clone(parts)
	slices.SortFunc(parts, func(a, b PartitionData) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	for i, p := range parts {
		if err := checkTopicPartition(p.Topic, p.Partition); err != nil {
			return nil, fmt.Errorf("snapshot %s: write: %w", m.ID, err)
		}
		if i > 0 && p.Topic == parts[i-1].Topic && p.Partition == parts[i-1].Partition {
			return nil, fmt.Errorf("snapshot %s: write: partition %s/%d given twice", m.ID, p.Topic, p.Partition)
		}
		if p.Iter == nil {
			return nil, fmt.Errorf("snapshot %s: write: partition %s/%d: nil Iter", m.ID, p.Topic, p.Partition)
		}
	}

	manifestObj := m.Object(ManifestName)
	if r, err := s.b.Get(ctx, manifestObj); err == nil {
		r.Close()
		return nil, fmt.Errorf("snapshot %s: write: %w", m.ID, os.ErrExist)
	} else if !isNotExist(err) {
		return nil, fmt.Errorf("snapshot %s: write: %w", m.ID, err)
	}

	tmpDir, err := os.MkdirTemp("", "featurepipe-snapshot-")
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: write: %w", m.ID, err)
	}
	defer os.RemoveAll(tmpDir)

	var uploaded []string
	cleanup := func() {
		// The snapshot never became visible; remove its files so they need
		// no garbage collection. Runs even when ctx is cancelled.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, name := range uploaded {
			_ = s.b.Delete(cctx, name)
		}
	}
	for _, p := range parts {
		name := sstName(p.Topic, p.Partition)
		ref, err := s.writePart(ctx, tmpDir, m.Object(name), p)
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("snapshot %s: write %s: %w", m.ID, name, err)
		}
		uploaded = append(uploaded, m.Object(name))
		ref.Name = name
		m.Files = append(m.Files, ref)
		m.Sources = append(m.Sources, SourcePartition{
			Topic:        p.Topic,
			Partition:    p.Partition,
			NextOffset:   p.NextOffset,
			MaxEventTime: p.MaxEventTime,
			File:         name,
		})
	}
	if err := m.validate(); err != nil {
		cleanup()
		return nil, fmt.Errorf("snapshot %s: write: %w", m.ID, err)
	}
	b, err := encodeManifest(&m)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("snapshot %s: encode manifest: %w", m.ID, err)
	}
	if err := s.b.Put(ctx, manifestObj, bytes.NewReader(b)); err != nil {
		cleanup()
		return nil, fmt.Errorf("snapshot %s: write manifest: %w", m.ID, err)
	}
	return &m, nil
}

// writePart builds the SST of p locally and uploads it as object obj.
func (s *Store) writePart(ctx context.Context, tmpDir, obj string, p PartitionData) (FileRef, error) {
	path := filepath.Join(tmpDir, sstName(p.Topic, p.Partition))
	if _, err := writeSST(ctx, path, p.Iter); err != nil {
		return FileRef{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return FileRef{}, err
	}
	defer f.Close()
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(f, h)}
	if err := s.b.Put(ctx, obj, cr); err != nil {
		return FileRef{}, err
	}
	return FileRef{Size: cr.n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// List returns the valid manifests in the backend, newest first (by
// CreatedAt, then ID). A snapshot whose manifest does not parse or
// contradicts itself is reported as a Problem (matching ErrCorrupt) and left
// out; one without a manifest (a Write in progress, or one that failed) is
// not a snapshot and is silently ignored. List reads every manifest but no
// SST: it does not detect corrupt or missing SSTs (see Verify).
func (s *Store) List(ctx context.Context) ([]*Manifest, []Problem, error) {
	snaps, err := s.scan(ctx)
	if err != nil {
		return nil, nil, err
	}
	ms, problems, err := s.readManifests(ctx, snaps)
	return ms, problems, err
}

// snapshotObjects are the objects of one snapshot id.
type snapshotObjects struct {
	id          string
	hasManifest bool
	objects     []string
}

// scan lists the backend once and groups the objects by snapshot id.
func (s *Store) scan(ctx context.Context) ([]*snapshotObjects, error) {
	names, err := s.b.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("snapshot: list: %w", err)
	}
	var snaps []*snapshotObjects
	byID := map[string]*snapshotObjects{}
	for _, name := range names {
		id, rest, ok := strings.Cut(name, "/")
		if !ok || checkID(id) != nil {
			continue // not ours
		}
		so := byID[id]
		if so == nil {
			so = &snapshotObjects{id: id}
			byID[id] = so
			snaps = append(snaps, so)
		}
		so.objects = append(so.objects, name)
		if rest == ManifestName {
			so.hasManifest = true
		}
	}
	return snaps, nil
}

func (s *Store) readManifests(ctx context.Context, snaps []*snapshotObjects) ([]*Manifest, []Problem, error) {
	var (
		ms       []*Manifest
		problems []Problem
	)
	for _, so := range snaps {
		if !so.hasManifest {
			continue
		}
		m, err := s.readManifest(ctx, so.id)
		switch {
		case errors.Is(err, ErrCorrupt):
			problems = append(problems, problemOf(err))
		case isNotExist(err):
			// Pruned since the listing.
		case err != nil:
			return nil, nil, err
		default:
			ms = append(ms, m)
		}
	}
	sortNewestFirst(ms)
	return ms, problems, nil
}

func sortNewestFirst(ms []*Manifest) {
	slices.SortStableFunc(ms, func(a, b *Manifest) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.ID, a.ID))
	})
}

// maxManifestBytes bounds how much of a manifest object is read.
const maxManifestBytes = 64 << 20

func (s *Store) readManifest(ctx context.Context, id string) (*Manifest, error) {
	r, err := s.b.Get(ctx, id+"/"+ManifestName)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: read manifest: %w", id, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: read manifest: %w", id, err)
	}
	if len(b) > maxManifestBytes {
		return nil, &CorruptError{ID: id, File: ManifestName, Err: fmt.Errorf("larger than %d bytes", maxManifestBytes)}
	}
	return decodeManifest(id, b)
}

// Verify checks that the manifest is self-consistent and that every file it
// lists exists with the right size and SHA-256. Cost: reads every file once.
// The error matches ErrCorrupt (each bad file is a *CorruptError, joined
// with errors.Join) for a bad snapshot; other errors are backend failures.
func (s *Store) Verify(ctx context.Context, m *Manifest) error {
	if err := m.validate(); err != nil {
		return &CorruptError{ID: m.ID, File: ManifestName, Err: err}
	}
	var errs []error
	for _, f := range m.Files {
		err := s.verifyFile(ctx, m, f)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return err
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// verifyFile reads one file and checks it against its FileRef.
func (s *Store) verifyFile(ctx context.Context, m *Manifest, f FileRef) error {
	return s.copyVerified(ctx, m, f, io.Discard)
}

// copyVerified copies file f of m to w and checks its size and checksum. A
// missing or mismatching file is a *CorruptError; w has then received
// unverified bytes and must be discarded.
func (s *Store) copyVerified(ctx context.Context, m *Manifest, f FileRef, w io.Writer) error {
	r, err := s.b.Get(ctx, m.Object(f.Name))
	if isNotExist(err) {
		return &CorruptError{ID: m.ID, File: f.Name, Err: fmt.Errorf("missing: %w", ErrNotExist)}
	}
	if err != nil {
		return fmt.Errorf("snapshot %s: read %s: %w", m.ID, f.Name, err)
	}
	defer r.Close()
	h := sha256.New()
	// Read at most one byte more than expected: enough to tell "too long".
	n, err := io.Copy(io.MultiWriter(w, h), ctxReader{ctx, io.LimitReader(r, f.Size+1)})
	if err != nil {
		return fmt.Errorf("snapshot %s: read %s: %w", m.ID, f.Name, err)
	}
	return checkSum(m, f, n, h)
}

func checkSum(m *Manifest, f FileRef, n int64, h hash.Hash) error {
	if n != f.Size {
		if n > f.Size {
			return &CorruptError{ID: m.ID, File: f.Name, Err: fmt.Errorf("larger than the %d bytes in the manifest", f.Size)}
		}
		return &CorruptError{ID: m.ID, File: f.Name, Err: fmt.Errorf("size %d, manifest says %d", n, f.Size)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return &CorruptError{ID: m.ID, File: f.Name, Err: fmt.Errorf("sha256 %s, manifest says %s", got, f.SHA256)}
	}
	return nil
}

// Fetch downloads file (an SST named by SourcePartition.File) of snapshot m
// to dstPath and verifies its size and checksum. dstPath appears only once
// verified (temp file, fsync, rename), ready for (*pebble.DB).Ingest; a
// corrupt file returns a *CorruptError (ErrCorrupt) and leaves nothing at
// dstPath. Put dstPath on the same filesystem as the database so Ingest can
// hard-link it instead of copying. Cost: one read of the file, one local
// write and an fsync. (featurepipe's loaders use Read: they rewrite keys or
// add to a batch of their own.)
func (s *Store) Fetch(ctx context.Context, m *Manifest, file, dstPath string) error {
	f, ok := m.fileRef(file)
	if !ok {
		return fmt.Errorf("snapshot %s: fetch %s: not in manifest: %w", m.ID, file, ErrNotExist)
	}
	tmp, err := s.download(ctx, m, f, filepath.Dir(dstPath), "."+filepath.Base(dstPath)+".tmp-*", true)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dstPath); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot %s: fetch %s: %w", m.ID, file, err)
	}
	return nil
}

// Read calls fn for every key/value of file (an SST named by
// SourcePartition.File) of snapshot m, in key order, after downloading it to
// a temporary local file (in os.TempDir, removed on return) and verifying
// it: a corrupt file returns a *CorruptError before fn is called. key and
// value are valid only during the call. An error from fn stops the iteration
// and is returned as is. Cost: one read of the file, one local write (not
// fsynced: the copy is scratch) and one read of the copy.
func (s *Store) Read(ctx context.Context, m *Manifest, file string, fn func(key, value []byte) error) error {
	f, ok := m.fileRef(file)
	if !ok {
		return fmt.Errorf("snapshot %s: read %s: not in manifest: %w", m.ID, file, ErrNotExist)
	}
	dir, err := os.MkdirTemp("", "featurepipe-snapshot-")
	if err != nil {
		return fmt.Errorf("snapshot %s: read %s: %w", m.ID, file, err)
	}
	defer os.RemoveAll(dir)
	path, err := s.download(ctx, m, f, dir, "*.sst", false)
	if err != nil {
		return err
	}
	if err := readSST(path, fn); err != nil {
		return fmt.Errorf("snapshot %s: read %s: %w", m.ID, file, err)
	}
	return nil
}

// Reader reads one snapshot file in key order; see Store.Open. Not safe for
// concurrent use.
type Reader struct {
	it      *pebble.Iterator
	dir     string
	started bool
	valid   bool
	name    string // "snapshot <id>: read <file>", for errors
}

// Open downloads file (an SST named by SourcePartition.File) of snapshot m
// to a temporary local file (in os.TempDir) and verifies it, as Read does,
// and returns a Reader over its pairs; Close removes the copy. A corrupt
// file returns a *CorruptError. Open lets a caller read several files side
// by side (a merge) where Read would need one pass per file.
func (s *Store) Open(ctx context.Context, m *Manifest, file string) (_ *Reader, err error) {
	f, ok := m.fileRef(file)
	if !ok {
		return nil, fmt.Errorf("snapshot %s: read %s: not in manifest: %w", m.ID, file, ErrNotExist)
	}
	dir, err := os.MkdirTemp("", "featurepipe-snapshot-")
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: read %s: %w", m.ID, file, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	path, err := s.download(ctx, m, f, dir, "*.sst", false)
	if err != nil {
		return nil, err
	}
	it, err := openSST(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: read %s: %w", m.ID, file, err)
	}
	return &Reader{it: it, dir: dir, name: fmt.Sprintf("snapshot %s: read %s", m.ID, file)}, nil
}

// Next moves to the next pair (the first one on the first call) and
// reports whether there is one; when it returns false, Err tells why.
func (r *Reader) Next() bool {
	if !r.started {
		r.started = true
		r.valid = r.it.First()
	} else if r.valid {
		r.valid = r.it.Next()
	}
	return r.valid
}

// Key is the current key, valid until the next call to Next.
func (r *Reader) Key() []byte { return r.it.Key() }

// Value is the current value, valid until the next call to Next.
func (r *Reader) Value() ([]byte, error) {
	v, err := r.it.ValueAndErr()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.name, err)
	}
	return v, nil
}

// Err is the error that ended the iteration, if any.
func (r *Reader) Err() error {
	if err := r.it.Error(); err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	return nil
}

// Close closes the reader and removes its local copy of the file.
func (r *Reader) Close() error {
	err := r.it.Close()
	if rerr := os.RemoveAll(r.dir); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	return nil
}

// download copies file f of m to a new file in dir (named by
// os.CreateTemp's pattern), verifying its size and checksum on the way, and
// returns the path of the closed copy. With durable the copy is fsynced
// first. On error nothing is left in dir; a corrupt file is a
// *CorruptError.
func (s *Store) download(ctx context.Context, m *Manifest, f FileRef, dir, pattern string, durable bool) (path string, err error) {
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", fmt.Errorf("snapshot %s: download %s: %w", m.ID, f.Name, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := s.copyVerified(ctx, m, f, tmp); err != nil {
		return "", err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			return "", fmt.Errorf("snapshot %s: download %s: %w", m.ID, f.Name, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("snapshot %s: download %s: %w", m.ID, f.Name, err)
	}
	return tmp.Name(), nil
}

// Choice is the snapshot chosen for one source partition.
type Choice struct {
	Manifest *Manifest
	Source   SourcePartition
}

// Newest picks, for each partition in want, the newest snapshot that covers
// it, satisfies accept (nil accepts all) and whose SST for that partition
// verifies (size and checksum). Snapshots skipped as corrupt are reported as
// Problems naming the snapshot and file; the partition then falls back to
// the next older snapshot. A partition no snapshot can serve is absent from
// the result: the caller starts it from scratch (replay from the earliest
// offset).
//
// Partitions are chosen independently: two partitions may come from
// different snapshots (each worker snapshots its own partitions, and one
// corrupt SST only disqualifies its own partition). Only the files chosen
// (and the corrupt ones passed over) are read, once each: verifying costs
// one read of each chosen SST, and Read or Fetch reads it again. want may
// hold duplicates; each partition is chosen once.
//
// Lookup cold start accepts all; backfill accepts only snapshots whose
// SourcePartition.MaxEventTime is before the earliest spine time.
func (s *Store) Newest(ctx context.Context, want []TopicPartition, accept func(*Manifest, SourcePartition) bool) (map[TopicPartition]Choice, []Problem, error) {
	return s.newest(ctx, want, accept, 1, func(m *Manifest, sp SourcePartition, f FileRef) error {
		return s.verifyFile(ctx, m, f)
	})
}

// Opened is a snapshot file chosen and opened by OpenNewest.
type Opened struct {
	Choice
	Reader *Reader
}

// OpenNewest is Newest followed by Open of each file chosen, in one read of
// each: it opens (Open: download and verify) the file of the newest
// snapshot that covers each partition of want and satisfies accept,
// falling back to older snapshots, reported as Problems, as Newest does
// when a file is corrupt. Up to openNewestParallel files are downloaded and
// verified at once. The caller closes every Reader returned; on error none
// is left open.
func (s *Store) OpenNewest(ctx context.Context, want []TopicPartition, accept func(*Manifest, SourcePartition) bool) (map[TopicPartition]Opened, []Problem, error) {
	var mu sync.Mutex
	readers := map[string]*Reader{} // by snapshot id and file
	chosen, problems, err := s.newest(ctx, want, accept, openNewestParallel, func(m *Manifest, sp SourcePartition, f FileRef) error {
		r, err := s.Open(ctx, m, f.Name)
		if err != nil {
			return err
		}
		mu.Lock()
		readers[m.ID+"/"+f.Name] = r
		mu.Unlock()
		return nil
	})
	if err != nil {
		for _, r := range readers {
			r.Close()
		}
		return nil, nil, err
	}
	opened := make(map[TopicPartition]Opened, len(chosen))
	for tp, c := range chosen {
		opened[tp] = Opened{Choice: c, Reader: readers[c.Manifest.ID+"/"+c.Source.File]}
	}
	return opened, problems, nil
}

// openNewestParallel is how many files OpenNewest downloads and verifies at
// once: enough to keep the cores hashing and an object store's connections
// busy.
const openNewestParallel = 8

// newest chooses, for each partition of want, the newest snapshot covering
// it that accept accepts and whose file try accepts: try returns an error
// matching ErrCorrupt to pass over a snapshot (a Problem), any other error
// to stop. Partitions are tried parallel at once, each partition's
// candidates one after the other, newest first; Problems come in the order
// of want.
func (s *Store) newest(ctx context.Context, want []TopicPartition, accept func(*Manifest, SourcePartition) bool, parallel int, try func(*Manifest, SourcePartition, FileRef) error) (map[TopicPartition]Choice, []Problem, error) {
	ms, problems, err := s.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	type result struct {
		choice   Choice
		ok       bool
		problems []Problem
		err      error
	}
	var tps []TopicPartition
	seen := make(map[TopicPartition]bool, len(want))
	for _, tp := range want {
		if !seen[tp] {
			seen[tp] = true // each partition's files are tried once
			tps = append(tps, tp)
		}
	}
	results := make([]result, len(tps))
	var failed atomic.Bool // stop trying once one partition failed
	choose := func(i int) {
		r := &results[i]
		for _, m := range ms {
			if failed.Load() {
				return
			}
			sp, ok := m.Source(tps[i])
			if !ok || (accept != nil && !accept(m, sp)) {
				continue
			}
			f, _ := m.fileRef(sp.File) // validate guarantees it is listed
			terr := try(m, sp, f)
			if terr == nil {
				r.choice, r.ok = Choice{Manifest: m, Source: sp}, true
				return
			}
			if !errors.Is(terr, ErrCorrupt) {
				r.err = terr
				failed.Store(true)
				return
			}
			r.problems = append(r.problems, problemOf(terr))
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(parallel, 1))
	for i := range tps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			choose(i)
		}()
	}
	wg.Wait()
	chosen := make(map[TopicPartition]Choice, len(tps))
	for i, r := range results {
		if r.err != nil {
			return nil, nil, r.err
		}
		problems = append(problems, r.problems...)
		if r.ok {
			chosen[tps[i]] = r.choice
		}
	}
	return chosen, problems, nil
}

// Prune deletes old snapshots and returns the ids it deleted.
//
// Retention is per source partition: a snapshot is kept while it is among
// the newest retain snapshots (by CreatedAt) of at least one of its source
// partitions; a snapshot without sources, while it is among the newest
// retain snapshots overall. With one writer snapshotting the same
// partitions this is "keep the newest retain snapshots"; with several
// workers, each snapshotting its own partitions, no partition loses its last
// snapshots because other partitions were snapshotted more often.
//
// A snapshot is deleted manifest first (so it stops existing), then its
// files. Every object of a snapshot is under its own "<id>/" prefix (file
// names hold no "/", see Manifest.Object), so deleting one snapshot's
// objects never touches another's. Garbage,
// i.e. ids without a valid manifest (a failed Write, an unparseable
// manifest), is deleted once the time in its id is more than 24h old, so a
// Write in progress is left alone; so are a backend's incomplete uploads
// (S3Backend.AbortIncompleteUploads) started more than 24h ago.
//
// The race: a reader that chose a snapshot (Newest) and is still reading it
// when retain newer snapshots of its partitions appear may see its files
// vanish; Fetch/Read then fail with ErrNotExist/ErrCorrupt and the reader
// calls Newest again. On a DirBackend a file already open stays readable.
// Concurrent Prunes (several workers) are safe: deletes are idempotent.
// Problems met while listing are skipped; Prune reads manifests, no SSTs.
func (s *Store) Prune(ctx context.Context) (deleted []string, err error) {
	snaps, err := s.scan(ctx)
	if err != nil {
		return nil, err
	}
	ms, _, err := s.readManifests(ctx, snaps)
	if err != nil {
		return nil, err
	}
	keep := s.retained(ms)
	valid := map[string]bool{}
	for _, m := range ms {
		valid[m.ID] = true
	}
	objects := map[string][]string{}
	for _, so := range snaps {
		objects[so.id] = so.objects
	}
	deleteSnapshot := func(id string) error {
		// Manifest first: from here on the snapshot does not exist.
		if err := s.b.Delete(ctx, id+"/"+ManifestName); err != nil {
			return fmt.Errorf("snapshot %s: prune: %w", id, err)
		}
		for _, obj := range objects[id] {
			if obj == id+"/"+ManifestName {
				continue // deleted above
			}
			if err := s.b.Delete(ctx, obj); err != nil {
				return fmt.Errorf("snapshot %s: prune: %w", id, err)
			}
		}
		deleted = append(deleted, id)
		return nil
	}
	// Oldest first, so an interrupted Prune has removed the least useful.
	for i := len(ms) - 1; i >= 0; i-- {
		if keep[ms[i].ID] {
			continue
		}
		if err := deleteSnapshot(ms[i].ID); err != nil {
			return deleted, err
		}
	}
	cutoff := s.now().Add(-s.garbageGrace)
	for _, so := range snaps {
		if valid[so.id] {
			continue
		}
		if t, ok := idTime(so.id); !ok || !t.Before(cutoff) {
			continue // not ours to judge, or possibly a Write in progress
		}
		if err := deleteSnapshot(so.id); err != nil {
			return deleted, err
		}
	}
	if c, ok := s.b.(uploadAborter); ok {
		if _, err := c.AbortIncompleteUploads(ctx, cutoff); err != nil {
			return deleted, fmt.Errorf("snapshot: prune: %w", err)
		}
	}
	return deleted, nil
}

// uploadAborter is a Backend whose interrupted Puts can leave invisible
// partial uploads behind (S3's multipart uploads of a killed process).
// Prune aborts those started before the garbage cutoff.
type uploadAborter interface {
	AbortIncompleteUploads(ctx context.Context, before time.Time) ([]string, error)
}

// retained returns the ids Prune keeps; ms is sorted newest first.
func (s *Store) retained(ms []*Manifest) map[string]bool {
	keep := map[string]bool{}
	count := map[TopicPartition]int{}
	none := TopicPartition{Partition: -1} // the group of snapshots without sources
	for _, m := range ms {
		groups := []TopicPartition{none}
		if len(m.Sources) > 0 {
			groups = groups[:0]
			for _, sp := range m.Sources {
				groups = append(groups, sp.TopicPartition())
			}
		}
		for _, g := range groups {
			if count[g] < s.retain {
				keep[m.ID] = true
			}
			count[g]++
		}
	}
	return keep
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) // ErrNotExist wraps it
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
