package lookup

import (
	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// First-seen markers (see pipeline/worker/seen.go): the view keeps, beside an
// entity's feature series, one series per source named
// keys.SeenFeatureID(source) whose Base.LastTS is the smallest event time of
// the entity in that source. They decide NOT_FOUND, apart from tile folding:
// an entity is known as of T iff one of its markers is < T. Tiles expiring
// (tombstones) never touch them.

// setSeen applies a marker record t to s, keeping the earlier time: a worker
// that rebuilt its state from a shorter history may publish a later one,
// and an entity once known stays known.
func setSeen(s *aggregations.Series, t aggregations.Tile) {
	if !s.Base.Empty() && !t.IR.Empty() && s.Base.LastTS <= t.IR.LastTS {
		return
	}
	s.SetTile(t)
}

// knownAt reports whether the entity of v had an event with ts < T: its
// earliest marker is before T. A view without any marker (written by a
// featurepipe before markers) counts as known when it has any series, the
// rule markers replace.
func knownAt(v *lookupView, T int64) (bool, error) {
	found := false
	for i, id := range v.ids {
		if !keys.IsSeen(id) {
			continue
		}
		found = true
		s, err := v.seriesAt(i)
		if err != nil {
			return false, err
		}
		if !s.Base.Empty() && s.Base.LastTS < T {
			return true, nil
		}
	}
	return !found && len(v.ids) > 0, nil
}
