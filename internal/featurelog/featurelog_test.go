package featurelog_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/keys"
)

func TestRoundTrip(t *testing.T) {
	ref := keys.TileRef{Entity: "user", EntityKey: "u1", FeatureID: "clicks@1", SourcePartition: 3, Start: 60_000}
	tile := aggregations.Tile{Start: 60_000}
	tile.IR.Update(aggregations.Event{TS: 61_000, Seq: 7, Value: 2.5})
	slab, key, value := featurelog.Append([]byte("prefix"), ref, tile, true)
	if string(slab[:6]) != "prefix" {
		t.Fatalf("slab prefix overwritten: %q", slab[:6])
	}
	// A later append must not change the earlier sub-slices.
	slab, key2, del := featurelog.Append(slab, ref, aggregations.Tile{}, false)
	_ = slab
	rec, err := featurelog.Parse(key, value)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Ref != ref || rec.Deleted || !reflect.DeepEqual(rec.Tile, tile) {
		t.Fatalf("round trip: got %+v, want ref %+v tile %+v", rec, ref, tile)
	}
	if del != nil {
		t.Fatalf("tombstone value %v, want nil", del)
	}
	rec, err = featurelog.Parse(key2, del)
	if err != nil || !rec.Deleted || rec.Ref != ref {
		t.Fatalf("tombstone: got %+v, %v", rec, err)
	}
}

func TestParseRejects(t *testing.T) {
	ref := keys.TileRef{Entity: "user", EntityKey: "u1", FeatureID: "clicks@1", Start: 0}
	_, key, value := featurelog.Append(nil, ref, aggregations.Tile{}, true)
	if _, err := featurelog.Parse(key[:len(key)-1], value); !errors.Is(err, keys.ErrMalformed) {
		t.Fatalf("short key: %v, want ErrMalformed", err)
	}
	if _, err := featurelog.Parse(key, append(value[:len(value):len(value)], 0)); !errors.Is(err, aggregations.ErrCorrupt) {
		t.Fatalf("trailing byte: %v, want ErrCorrupt", err)
	}
	if _, err := featurelog.Parse(key, []byte{0xff}); !errors.Is(err, aggregations.ErrCorrupt) {
		t.Fatalf("bad tile: %v, want ErrCorrupt", err)
	}
}

// ParseRaw reads exactly what Parse reads (its names aliasing the key),
// fails the same way, and allocates nothing for a plain tile: a replica
// parses every record of the feature log.
func TestParseRawEqualsParse(t *testing.T) {
	ref := keys.TileRef{Entity: "user", EntityKey: "u1", FeatureID: "clicks@1", SourcePartition: 3, Start: 60_000}
	tile := aggregations.Tile{Start: 60_000}
	tile.IR.Update(aggregations.Event{TS: 61_000, Seq: 7, Value: 2.5})
	_, key, value := featurelog.Append(nil, ref, tile, true)
	_, _, del := featurelog.Append(nil, ref, aggregations.Tile{}, false)
	for _, c := range []struct {
		name       string
		key, value []byte
	}{
		{"tile", key, value},
		{"tombstone", key, del},
		{"short key", key[:len(key)-1], value},
		{"bad tile", key, []byte{0xff}},
		{"trailing byte", key, append(value[:len(value):len(value)], 0)},
	} {
		want, werr := featurelog.Parse(c.key, c.value)
		got, gerr := featurelog.ParseRaw(c.key, c.value)
		if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
			t.Fatalf("%s: ParseRaw error %v, Parse error %v", c.name, gerr, werr)
		}
		if werr != nil {
			continue
		}
		r := got.Ref
		gotRef := keys.TileRef{Entity: string(r.Entity), EntityKey: string(r.EntityKey), FeatureID: string(r.FeatureID),
			SourcePartition: r.SourcePartition, Start: r.Start}
		if gotRef != want.Ref || got.Deleted != want.Deleted || !reflect.DeepEqual(got.Tile, want.Tile) {
			t.Fatalf("%s: ParseRaw %+v, Parse %+v", c.name, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := featurelog.ParseRaw(key, value); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ParseRaw allocates %v times per record, want 0", n)
	}
}
