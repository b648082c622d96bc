package lookup

import (
	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
)

// foldDef computes feature version def of the known entity in v as of T:
// its value (ok false: null), its status and the latest update time (ms)
// of the tiles it read. depth is the nesting of derived features (0 at the
// top), which picks v's scratch activation.
//
//   - An aggregated feature folds its window: PRESENT, EMPTY_WINDOW, or
//     EXPIRED (config.Feature.Expired: the empty-window value).
//   - A derived feature folds each input the same way (recursively) and
//     evaluates its expression over their values with
//     config.Derivation.Eval, the evaluation backfill uses too: PRESENT,
//     with its value or null.
//
// It allocates nothing for aggregated features once v is warm; a derived
// one costs what CEL allocates (about one small box per input read).
func foldDef(def *config.Feature, v *lookupView, T int64, depth int) (x float64, ok bool, status string, updated int64, err error) {
	if d := def.Derived; d != nil {
		for len(v.derived) <= depth {
			v.derived = append(v.derived, config.DerivedInput{})
		}
		v.derived[depth].Reset(d)
		for i, in := range d.Inputs {
			ix, iok, _, iu, err := foldDef(in, v, T, depth+1)
			if err != nil {
				return 0, false, "", 0, err
			}
			v.derived[depth].Set(i, ix, iok)
			updated = max(updated, iu)
		}
		x, ok = d.Eval(&v.derived[depth])
		return x, ok, StatusPresent, updated, nil
	}
	ir, status, updated, err := foldIR(def, v, T)
	if err != nil {
		return 0, false, "", 0, err
	}
	if x, ok = aggregations.Finalize(def.Aggregation, ir); !ok && def.Default != nil {
		x, ok = *def.Default, true
	}
	return x, ok, status, updated, nil
}

// foldIR folds the window of aggregated feature def as of T: its IR (empty
// when EXPIRED), its status (PRESENT, EMPTY_WINDOW or EXPIRED) and the
// latest update time (ms) of the tiles it read.
func foldIR(def *config.Feature, v *lookupView, T int64) (ir aggregations.IR, status string, updated int64, err error) {
	ir, updated, _, err = v.read(def.ID, def.Window, T)
	if err != nil {
		return aggregations.IR{}, "", 0, err
	}
	status = StatusEmptyWindow
	switch {
	case def.Expired(ir, T):
		status, ir = StatusExpired, aggregations.IR{}
	case !ir.Empty():
		status = StatusPresent
	}
	return ir, status, updated, nil
}
