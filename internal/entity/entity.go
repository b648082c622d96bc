// Package entity encodes the worker's state value of one entity in one
// source partition: a list of named feature series. The layout is
// self-describing (features are named, not numbered) so that a feature file
// may add or drop versions between runs, and so that readers without the
// worker's plan (lookup cold start from a snapshot) can decode it.
//
// Layout: uvarint(n), then n times: uvarint(len(id)), id, series
// (aggregations.AppendSeries).
package entity

import (
	"encoding/binary"
	"fmt"

	"github.com/featurepipe/featurepipe/aggregations"
)

// Append appends the value of the series named ids.
func Append(dst []byte, ids []string, series []aggregations.Series) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ids)))
	for i, id := range ids {
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = aggregations.AppendSeries(dst, &series[i])
	}
	return dst
}

// Decode decodes a value written by Append. For each feature, target
// returns the series to decode into, or nil to skip it.
func Decode(src []byte, target func(id string) *aggregations.Series) error {
	n, w := binary.Uvarint(src)
	if w <= 0 {
		return fmt.Errorf("entity value: %w", aggregations.ErrCorrupt)
	}
	src = src[w:]
	var skip aggregations.Series
	for j := uint64(0); j < n; j++ {
		l, w := binary.Uvarint(src)
		if w <= 0 || uint64(len(src)-w) < l {
			return fmt.Errorf("entity value: %w", aggregations.ErrCorrupt)
		}
		id := string(src[w : w+int(l)])
		src = src[w+int(l):]
		s := target(id)
		if s == nil {
			s = &skip
		}
		var err error
		if src, err = aggregations.DecodeSeries(src, s); err != nil {
			return fmt.Errorf("entity value, feature %s: %w", id, err)
		}
	}
	return nil
}
