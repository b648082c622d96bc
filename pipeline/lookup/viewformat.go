package lookup

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/keys"
)

// viewFormat is the layout of the view's values (see entityView.encode),
// recorded under viewFormatKey. 1 (never recorded: views without the
// marker): series not length-prefixed. 2: length-prefixed series, the
// layout the lookup cache holds. 3: one entry per feature and source
// partition (the feature-log key names the source partition; a read merges
// the partitions' series). Since blind view writes a key's value may also
// be a merge operand (viewmerge.go): a value change that needs no new
// format, since the store's merger name (ViewMergerName) keeps a
// featurepipe without that merger from opening it.
const viewFormat = 3

// viewFormatKey is the Pebble key of the view's format. It is built here,
// not in internal/keys, and cannot collide with any key that package
// builds for the Pebble stores: those all start with a one-byte ASCII
// letter prefix ('E' view, 'L' view offset, 'T', 'O', ...), this one with
// 0x00, so it is none of them and falls in none of their ranges (a scan of
// the views, 'E'..'F', never sees it).
var viewFormatKey = []byte("\x00featurepipe/lookup/view-format")

// viewRanges are the key ranges [lower, upper) the view is made of: every
// entity's view and every feature-log offset (internal/keys: one-byte
// prefixes, so each prefix's keys are one range).
func viewRanges() [][2][]byte {
	var out [][2][]byte
	for _, k := range [][]byte{keys.View(nil, "", ""), keys.ViewLogOffset("", 0)} {
		out = append(out, [2][]byte{{k[0]}, {k[0] + 1}})
	}
	return out
}

// checkViewFormat makes sure the view has the current layout before it is
// read or written (Run calls it first).
//
//   - A view with the current marker is used as it is.
//   - A view without a marker (written by a featurepipe before the marker,
//     in layout 1) or with an older one is rebuilt: its entities and
//     feature-log offsets are deleted and the marker written in one atomic
//     batch, so the replica then starts like a new one, from snapshots or
//     by replaying the feature log, which holds every tile. An empty view
//     just gets the marker.
//   - A view of a newer format (a downgrade) is refused with an error
//     saying to delete the --data directory's view: it is not touched.
func (s *Service) checkViewFormat() error {
	ver, found, err := s.o.Store.GetOffset(viewFormatKey)
	if err != nil {
		return fmt.Errorf("read the lookup view's format: %w", err)
	}
	switch {
	case found && ver == viewFormat:
		return nil
	case found && ver > viewFormat:
		return fmt.Errorf("the lookup view has format %d, newer than this featurepipe's %d: upgrade featurepipe, "+
			"or delete the view's directory (view/ under --data) to rebuild it from the feature log", ver, viewFormat)
	}
	empty, err := s.viewEmpty()
	if err != nil {
		return err
	}
	b := s.o.Store.NewBatch()
	for _, r := range viewRanges() {
		if err := b.DeleteRange(r[0], r[1], nil); err != nil {
			b.Close()
			return fmt.Errorf("clear the lookup view: %w", err)
		}
	}
	if err := markViewFormat(b); err != nil {
		b.Close()
		return fmt.Errorf("mark the lookup view's format: %w", err)
	}
	if err := s.o.Store.Commit(b); err != nil {
		return fmt.Errorf("mark the lookup view's format: %w", err)
	}
	if !empty {
		s.log.Warn("the lookup view had an older layout: cleared, it is rebuilt from snapshots or the feature log",
			zap.Int64("format", max(ver, 1)), zap.Int("now", viewFormat))
	}
	return nil
}

// viewEmpty reports whether no key of the view's ranges exists.
func (s *Service) viewEmpty() (bool, error) {
	for _, r := range viewRanges() {
		it, err := s.o.Store.DB().NewIter(&pebble.IterOptions{LowerBound: r[0], UpperBound: r[1]})
		if err != nil {
			return false, fmt.Errorf("scan the lookup view: %w", err)
		}
		has := it.First()
		if err := it.Close(); err != nil {
			return false, fmt.Errorf("scan the lookup view: %w", err)
		}
		if has {
			return false, nil
		}
	}
	return true, nil
}

// markViewFormat adds the current format marker to b.
func markViewFormat(b *pebble.Batch) error { return b.Set(viewFormatKey, keys.PutU64(viewFormat), nil) }
