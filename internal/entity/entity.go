// Package entity encodes the worker's state value of one entity in one
// source partition: a list of named feature series. The layout is
// self-describing (features are named, not numbered) so that a feature file
// may add or drop versions between runs, and so that readers without the
// worker's plan (lookup cold start from a snapshot) can decode it.
//
// Layout: uvarint(n), then n times: uvarint(len(id)), id, series
// (aggregations.AppendSeries). Nothing follows the last series.
package entity

import (
	"encoding/binary"
	"fmt"

	"github.com/featurepipe/featurepipe/aggregations"
)

// Append appends the value of the series named ids.
func Append(dst []byte, ids []string, series []aggregations.Series) []byte {
	return AppendWith(dst, ids, series, "", nil)
}

// AppendWith is Append with one more series, extra named extraID, after
// the others; a nil extra is left out (then it is Append). Decode reads it
// like any other series. The worker keeps its first-seen marker so.
func AppendWith(dst []byte, ids []string, series []aggregations.Series, extraID string, extra *aggregations.Series) []byte {
	n := len(ids)
	if extra != nil {
		n++
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	for i, id := range ids {
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = aggregations.AppendSeries(dst, &series[i])
	}
	if extra != nil {
		dst = binary.AppendUvarint(dst, uint64(len(extraID)))
		dst = append(dst, extraID...)
		dst = aggregations.AppendSeries(dst, extra)
	}
	return dst
}

// Decode decodes a value written by Append, in order. For each feature,
// target gets its id, aliasing src and valid only during the call (compare
// with string(id) == x or index a map with m[string(id)], both
// allocation-free; copy with string(id) to keep it), and returns the series
// to decode into (aggregations.DecodeSeries
// resets it first), or nil to skip it. A truncated value, a value with
// bytes after its last series, or a corrupt series fails with an error
// wrapping aggregations.ErrCorrupt; targets already returned may then hold
// decoded series.
func Decode(src []byte, target func(id []byte) *aggregations.Series) error {
	return DecodeEncoded(src, target, nil)
}

// DecodeEncoded is Decode that also passes to encoded, when not nil, the
// encoding of each series (aliasing src, valid only during the call) right
// after decoding it, so that a caller that stores the series as they are
// can copy their bytes instead of encoding the decoded series again.
func DecodeEncoded(src []byte, target func(id []byte) *aggregations.Series, encoded func(series []byte)) error {
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
		id := src[w : w+int(l)]
		src = src[w+int(l):]
		s := target(id)
		if s == nil {
			s = &skip
		}
		rest, err := aggregations.DecodeSeries(src, s)
		if err != nil {
			return fmt.Errorf("entity value, feature %s: %w", id, err)
		}
		if encoded != nil {
			encoded(src[:len(src)-len(rest)])
		}
		src = rest
	}
	if len(src) > 0 {
		return fmt.Errorf("entity value: %d bytes after the last of %d series: %w", len(src), n, aggregations.ErrCorrupt)
	}
	return nil
}
