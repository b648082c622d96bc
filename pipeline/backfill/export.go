package backfill

import (
	"os"

	"github.com/parquet-go/parquet-go"

	"github.com/featurepipe/featurepipe/pipeline/events"
)

// exportEvents writes the kept events of every source to a Parquet file:
// topic, partition, offset, key, ts, arrival (all required) and one optional
// double column per distinct value field name read as a number, null for
// the events of sources without that field (a field only approx_distinct
// reads, a string say, has no column: its events hold a hash of it; nor
// does a string field last, first, first_k or last_k read). It
// must run before group, which releases the per-partition events.
func exportEvents(path string, srcs []*sourceReplay, keys []string) error {
	fields := []parquet.Field{
		namedNode{parquet.String(), "topic"},
		namedNode{parquet.Leaf(parquet.Int32Type), "partition"},
		namedNode{parquet.Leaf(parquet.Int64Type), "offset"},
		namedNode{parquet.String(), "key"},
		namedNode{parquet.Leaf(parquet.Int64Type), "ts"},
		namedNode{parquet.Leaf(parquet.Int64Type), "arrival"},
	}
	const fixed = 6
	colOf := map[string]int{}
	for _, s := range srcs {
		for i, f := range s.plan.Fields {
			if e := s.plan.Encodings[i]; e == events.EncodeDistinct || e == events.EncodeString {
				continue // approx_distinct's reading of a string, boolean or long: a hash, not the value; a string: no number
			}
			if _, ok := colOf[f]; !ok {
				colOf[f] = len(fields)
				fields = append(fields, namedNode{parquet.Optional(parquet.Leaf(parquet.DoubleType)), f})
			}
		}
	}
	schema := parquet.NewSchema("events", orderedGroup(fields))
	return writeAtomically(path, func(f *os.File) error {
		w := parquet.NewWriter(f, schema, parquet.Compression(&parquet.Zstd))
		rows := make([]parquet.Row, 0, 1024)
		flush := func() error {
			_, err := w.WriteRows(rows)
			rows = rows[:0]
			return err
		}
		for _, s := range srcs {
			topic := []byte(s.plan.Source.Topic)
			nf := s.plan.Width()
			for p, pe := range s.byPart {
				part := s.ranges[p].Partition
				for _, chunk := range pe.chunks {
					for k, e := range chunk.events {
						row := make(parquet.Row, len(fields))
						row[0] = parquet.ByteArrayValue(topic).Level(0, 0, 0)
						row[1] = parquet.Int32Value(part).Level(0, 0, 1)
						row[2] = parquet.Int64Value(e.seq).Level(0, 0, 2)
						row[3] = parquet.ByteArrayValue([]byte(keys[e.ent])).Level(0, 0, 3)
						row[4] = parquet.Int64Value(e.ts).Level(0, 0, 4)
						row[5] = parquet.Int64Value(e.arrival).Level(0, 0, 5)
						for c := fixed; c < len(fields); c++ {
							row[c] = parquet.NullValue().Level(0, 0, c)
						}
						for i, name := range s.plan.Fields {
							if e := s.plan.Encodings[i]; e == events.EncodeDistinct || e == events.EncodeString {
								continue
							}
							c := colOf[name]
							row[c] = parquet.DoubleValue(chunk.values[k*nf+i]).Level(0, 1, c)
						}
						rows = append(rows, row)
						if len(rows) == cap(rows) {
							if err := flush(); err != nil {
								return err
							}
						}
					}
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		return w.Close()
	})
}
