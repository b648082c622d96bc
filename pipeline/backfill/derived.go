package backfill

import (
	"github.com/featurepipe/featurepipe/internal/config"
)

// cellStatus is the status of one computed value, with the meaning of the
// lookup service's statuses (DESIGN.md "Statuses"): the same rule decides
// both (known, config.Feature.Expired, an empty window).
type cellStatus uint8

const (
	statusNotFound cellStatus = iota
	statusPresent
	statusEmptyWindow
	statusExpired
)

// Status names, as the lookup API spells them (Values.Status).
const (
	StatusPresent     = "PRESENT"
	StatusEmptyWindow = "EMPTY_WINDOW"
	StatusNotFound    = "NOT_FOUND"
	StatusExpired     = "EXPIRED"
)

func (s cellStatus) String() string {
	switch s {
	case statusPresent:
		return StatusPresent
	case statusEmptyWindow:
		return StatusEmptyWindow
	case statusExpired:
		return StatusExpired
	}
	return StatusNotFound
}

// expandDerived returns the aggregated columns to compute for cols: cols'
// aggregated columns, then every aggregated feature a derived column reads
// (directly or through other derived features) that cols do not already
// have, as a hidden column named by its id. The replay and the sweep
// compute only those; deriveResults then evaluates the derived columns
// from them.
func expandDerived(cols []column) []column {
	var base []column
	have := map[*config.Feature]bool{}
	for _, c := range cols {
		if !c.feature.IsDerived() && !have[c.feature] {
			have[c.feature] = true
			base = append(base, c)
		}
	}
	var add func(f *config.Feature)
	add = func(f *config.Feature) {
		if f.IsDerived() {
			for _, in := range f.Derived.Inputs {
				add(in)
			}
			return
		}
		if !have[f] {
			have[f] = true
			base = append(base, column{name: f.ID, feature: f})
		}
	}
	for _, c := range cols {
		if c.feature.IsDerived() {
			add(c.feature)
		}
	}
	return base
}

// deriveResults returns the results of cols from those of base (as
// expandDerived made them): aggregated columns are copied, derived ones
// evaluated row by row with config.Derivation.Eval over their inputs'
// values, the evaluation the lookup service uses. A derived value is
// NOT_FOUND (null) where the entity is unknown, else PRESENT with its value
// or null. When cols is base (no derived column), res is returned as is.
func deriveResults(cols, base []column, res *results) *results {
	derived := false
	for _, c := range cols {
		derived = derived || c.feature.IsDerived()
	}
	if !derived {
		return res
	}
	baseIdx := make(map[*config.Feature]int, len(base))
	for i, c := range base {
		baseIdx[c.feature] = i
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	rows := 0
	if len(base) > 0 {
		rows = len(res.values) / len(base)
	}
	out := newResults(names, rows)
	out.markLists(cols)
	var ins []config.DerivedInput // one activation per nesting depth
	var eval func(f *config.Feature, row, depth int) (float64, bool)
	eval = func(f *config.Feature, row, depth int) (float64, bool) {
		if !f.IsDerived() {
			i := row*len(base) + baseIdx[f]
			return res.values[i], res.valid[i]
		}
		for len(ins) <= depth {
			ins = append(ins, config.DerivedInput{})
		}
		ins[depth].Reset(f.Derived)
		for k, in := range f.Derived.Inputs {
			v, ok := eval(in, row, depth+1)
			ins[depth].Set(k, v, ok)
		}
		return f.Derived.Eval(&ins[depth])
	}
	for row := range rows {
		// Every base column shares the row's known (NOT_FOUND) state, and a
		// derived feature reads at least one.
		known := len(base) > 0 && res.status[row*len(base)] != statusNotFound
		for c, col := range cols {
			if !col.feature.IsDerived() {
				out.copyCell(row, c, res, row*len(base)+baseIdx[col.feature], baseIdx[col.feature])
				continue
			}
			if !known {
				out.set(row, c, 0, false, statusNotFound)
				continue
			}
			v, ok := eval(col.feature, row, 0)
			out.set(row, c, v, ok, statusPresent)
		}
	}
	return out
}
