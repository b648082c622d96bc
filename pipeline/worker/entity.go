package worker

import (
	"encoding/binary"
	"fmt"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// entityState is the decoded worker state of one entity in one source
// partition: one Series per feature of the source, in plan order. It is
// stored as a single Pebble value so that applying an event costs one point
// read, however many features and tiles there are.
type entityState struct {
	key      string
	series   []aggregations.Series
	modified bool
}

// encodeEntity appends the value layout: uvarint(n) then n times
// (uvarint len, feature id, series). Features are named, not numbered, so a
// feature file may add or drop features between runs.
func encodeEntity(dst []byte, plan *events.Plan, es *entityState) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(plan.Features)))
	for i := range plan.Features {
		id := plan.Features[i].ID
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = aggregations.AppendSeries(dst, &es.series[i])
	}
	return dst
}

// decodeEntity fills es from a stored value. Series of features that are no
// longer in the plan are skipped; new features start empty.
func decodeEntity(src []byte, plan *events.Plan, es *entityState) error {
	if cap(es.series) >= len(plan.Features) {
		es.series = es.series[:len(plan.Features)]
		for i := range es.series {
			es.series[i] = aggregations.Series{Tiles: es.series[i].Tiles[:0]}
		}
	} else {
		es.series = make([]aggregations.Series, len(plan.Features))
	}
	n, w := binary.Uvarint(src)
	if w <= 0 {
		return fmt.Errorf("entity %q: %w", es.key, aggregations.ErrCorrupt)
	}
	src = src[w:]
	var skip aggregations.Series
	for j := uint64(0); j < n; j++ {
		l, w := binary.Uvarint(src)
		if w <= 0 || uint64(len(src)-w) < l {
			return fmt.Errorf("entity %q: %w", es.key, aggregations.ErrCorrupt)
		}
		id := src[w : w+int(l)]
		src = src[w+int(l):]
		target := &skip
		for i := range plan.Features {
			if plan.Features[i].ID == string(id) {
				target = &es.series[i]
				break
			}
		}
		var err error
		if src, err = aggregations.DecodeSeries(src, target); err != nil {
			return fmt.Errorf("entity %q feature %s: %w", es.key, id, err)
		}
	}
	return nil
}
