package feastflight

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// timesOf reads T in epoch ms from a timestamp column of any unit, rounding
// sub-millisecond digits up (an event at ts is before T iff ts < ceil(T)),
// before 1970 as after it.
func TestTimesOfRoundsUpToTheMillisecond(t *testing.T) {
	for _, tc := range []struct {
		unit arrow.TimeUnit
		in   []int64
		want []int64
	}{
		{arrow.Second, []int64{0, 2, -3}, []int64{0, 2000, -3000}},
		{arrow.Millisecond, []int64{0, 1234, -1234}, []int64{0, 1234, -1234}},
		{arrow.Microsecond, []int64{0, 1000, 1001, 1999, -1, -1000, -1500}, []int64{0, 1, 2, 2, 0, -1, -1}},
		{arrow.Nanosecond, []int64{0, 1_000_000, 1_000_001, -1, -1_000_001}, []int64{0, 1, 2, 0, -1}},
	} {
		b := array.NewTimestampBuilder(memory.DefaultAllocator, &arrow.TimestampType{Unit: tc.unit, TimeZone: "UTC"})
		for _, v := range tc.in {
			b.Append(arrow.Timestamp(v))
		}
		col := b.NewArray()
		b.Release()
		schema := arrow.NewSchema([]arrow.Field{{Name: timestampColumn, Type: col.DataType()}}, nil)
		got, err := timesOf(schema, []arrow.Array{col})
		col.Release()
		if err != nil {
			t.Fatalf("%s: %v", tc.unit, err)
		}
		for i := range tc.want {
			if got[i] != tc.want[i] {
				t.Errorf("%s %d: T %d, want %d", tc.unit, tc.in[i], got[i], tc.want[i])
			}
		}
	}
}
