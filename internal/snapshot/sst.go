package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TableFormat is the sstable format of snapshot SSTs: the oldest format Pebble
// v2 writes, which every Pebble v2 database ingests whatever its format major
// version (state.Open uses Pebble's default, whose newest table format is
// Pebblev3). Keys use Pebble's default comparer (bytes.Compare).
const TableFormat = sstable.TableFormatMinSupported

// ErrUnsorted is returned (wrapped) by Write when a PartitionData.Iter yields
// a key that is not strictly greater than the previous one.
var ErrUnsorted = errors.New("snapshot: keys not strictly increasing")

// writeSST writes the pairs of iter to a new SST at path. Keys must be
// strictly increasing. It returns the number of keys written.
func writeSST(ctx context.Context, path string, iter func(yield func(key, value []byte) bool) error) (int64, error) {
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return 0, err
	}
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), sstable.WriterOptions{TableFormat: TableFormat})
	var (
		n    int64
		prev []byte
		werr error
	)
	ierr := iter(func(key, value []byte) bool {
		if n > 0 && bytes.Compare(key, prev) <= 0 {
			werr = fmt.Errorf("%w: key %q after %q", ErrUnsorted, key, prev)
			return false
		}
		if n%4096 == 0 {
			if werr = ctx.Err(); werr != nil {
				return false
			}
		}
		if werr = w.Set(key, value); werr != nil {
			return false
		}
		prev = append(prev[:0], key...)
		n++
		return true
	})
	cerr := w.Close() // closes (and fsyncs) the file
	switch {
	case werr != nil:
		return n, werr
	case ierr != nil:
		return n, fmt.Errorf("iterate partition: %w", ierr)
	case cerr != nil:
		return n, fmt.Errorf("finish sstable: %w", cerr)
	}
	return n, nil
}

// readSST calls fn for every key/value of the SST at path, in key order.
func readSST(path string, fn func(key, value []byte) error) (err error) {
	it, err := openSST(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("read sstable: %w", cerr)
		}
	}()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("read sstable: %w", err)
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	return it.Error()
}

// openSST returns an iterator over the SST at path; closing it closes the
// file.
func openSST(path string) (*pebble.Iterator, error) {
	f, err := vfs.Default.Open(path)
	if err != nil {
		return nil, err
	}
	// NewExternalIter takes ownership of f and closes it with the iterator.
	it, err := pebble.NewExternalIter(externalOpts, nil, [][]sstable.ReadableFile{{f}})
	if err != nil {
		return nil, fmt.Errorf("open sstable: %w", err)
	}
	return it, nil
}

var externalOpts = func() *pebble.Options {
	o := &pebble.Options{}
	o.EnsureDefaults()
	return o
}()
