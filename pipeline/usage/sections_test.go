package usage

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// A feature is used whatever section of the lookup log carries it: a
// consumer that only reads string, list, bucketed or top_k features must
// show up in their usage (and so in plan), through the Aggregator and
// through the live counts of a record the Decoder read.
func TestEverySectionCountsAsUse(t *testing.T) {
	one, s := 1.5, "m-1"
	top := &lookuplog.ServedTop{Value: json.RawMessage(`[{"value":"m-1","count":2}]`)}
	e := &lookuplog.Entry{Entity: "user", Key: "u1", At: now.Add(-time.Minute).UnixMilli(), Consumer: "fraud-api", Request: "r1",
		Features:          map[string]*float64{"num@1": &one},
		Lists:             map[string][]float64{"list@1": {1, 2}},
		Strings:           map[string]*string{"str@1": &s},
		StringLists:       map[string][]string{"strlist@1": {"a"}},
		Buckets:           map[string]map[string]*float64{"bucket@1": {"EUR": &one}},
		BucketStrings:     map[string]map[string]*string{"bucketstr@1": {"EUR": &s}},
		Tops:              map[string]*lookuplog.ServedTop{"top@1": top},
		BucketLists:       map[string]map[string][]float64{"bucketlist@1": {"EUR": {1}}},
		BucketStringLists: map[string]map[string][]string{"bucketstrlist@1": {"EUR": {"a"}}},
		BucketTops:        map[string]map[string]*lookuplog.ServedTop{"buckettop@1": {"EUR": top}},
	}
	want := []string{"bucket@1", "bucketlist@1", "bucketstr@1", "bucketstrlist@1", "buckettop@1", "list@1", "num@1", "str@1", "strlist@1", "top@1"}

	a := NewAggregator(now)
	a.Add(e)
	var got []string
	for id, st := range a.Result() {
		if len(st.Consumers) != 1 || st.Consumers[0].Name != "fraud-api" {
			t.Errorf("aggregator: %s consumers %+v, want fraud-api", id, st.Consumers)
		}
		got = append(got, id)
	}
	if slices.Sort(got); !slices.Equal(got, want) {
		t.Errorf("aggregator counted %v, want every section's %v", got, want)
	}

	// As Follow reads it: the record's bytes through a Decoder.
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var r lookuplog.Record
	if err := new(lookuplog.Decoder).Decode(b, &r); err != nil {
		t.Fatal(err)
	}
	l := NewLive()
	l.AddRecord(&r)
	keys := l.ConsumerKeys()
	got = got[:0]
	for id, byConsumer := range keys {
		if byConsumer["fraud-api"] != 1 {
			t.Errorf("live: %s keys by consumer %v, want fraud-api 1", id, byConsumer)
		}
		got = append(got, id)
	}
	if slices.Sort(got); !slices.Equal(got, want) {
		t.Errorf("live counted %v, want every section's %v", got, want)
	}
}
