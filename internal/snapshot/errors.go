package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
)

// ErrNotExist is returned (wrapped) when an object, a snapshot or a file of a
// snapshot is absent. It wraps fs.ErrNotExist, so errors.Is(err,
// fs.ErrNotExist) holds as well: a Backend can return either.
var ErrNotExist = fmt.Errorf("snapshot: does not exist: %w", fs.ErrNotExist)

// ErrCorrupt is returned (wrapped) when a snapshot must not be loaded: a file
// with the wrong size or checksum, a file the manifest lists that is missing,
// or a manifest that does not parse or contradicts itself. A corrupt snapshot
// is never repaired, only skipped (see Store.Newest) and eventually pruned.
var ErrCorrupt = errors.New("snapshot: corrupt")

// CorruptError says which snapshot and file are corrupt and why. It matches
// ErrCorrupt with errors.Is, and also whatever Err wraps (a missing file is
// both ErrCorrupt and ErrNotExist).
type CorruptError struct {
	ID   string // snapshot id
	File string // file within the snapshot: an SST name or ManifestName
	Err  error  // the cause
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("snapshot %s: %s: corrupt: %v", e.ID, e.File, e.Err)
}

// Unwrap returns the cause.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Problem reports a snapshot that List or Newest skipped. Problems are not
// failures of the call: the caller logs them (and counts them in a metric)
// and carries on with the snapshots that are valid.
type Problem struct {
	ID   string // snapshot id
	File string // file within the snapshot: an SST name or ManifestName
	Err  error  // why it was skipped; matches ErrCorrupt
}

// Error describes the problem, naming the snapshot and the file.
func (p Problem) Error() string {
	return fmt.Sprintf("snapshot %s skipped: %s: %v", p.ID, p.File, p.Err)
}

// Unwrap returns the cause.
func (p Problem) Unwrap() error { return p.Err }

func problemOf(err error) Problem {
	var ce *CorruptError
	if errors.As(err, &ce) {
		return Problem{ID: ce.ID, File: ce.File, Err: err}
	}
	return Problem{Err: err}
}
