package registry

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

func TestReadyFollowsTheWarmingUpPartitions(t *testing.T) {
	v := NewView()
	apply := func(p int32, state string) {
		t.Helper()
		r, err := StatusRecord("registry", Status{Feature: "f@2", Topic: "tx", Partition: p, State: state})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Apply(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	if !v.Ready("f@2") {
		t.Fatal("a version with no status is ready")
	}
	apply(0, StateWarmingUp)
	apply(1, StateReady)
	if v.Ready("f@2") {
		t.Fatal("one partition warming up: not ready")
	}
	if !v.Ready("f@1") {
		t.Fatal("another version is unaffected")
	}
	apply(0, StateReady)
	if !v.Ready("f@2") {
		t.Fatal("every partition ready: ready")
	}
	apply(1, StateWarmingUp)
	if err := v.Apply([]byte("status/f@2/tx/1"), nil); err != nil { // tombstone
		t.Fatal(err)
	}
	if !v.Ready("f@2") {
		t.Fatal("a deleted warming status no longer counts")
	}
}

// newCluster starts a kfake broker with the registry topic (3 partitions)
// and returns its addresses and a producer.
func newCluster(t *testing.T, topics ...string) ([]string, *kgo.Client) {
	t.Helper()
	c, cl := testkit.KFake(t, 3, topics...)
	return c.ListenAddrs(), cl
}

// Follow reports it caught up only once the view holds every record the
// topic had when it started: a version warming up must not look ready then.
func TestFollowReportsCatchUpAfterTheExistingRecords(t *testing.T) {
	const topic = "registry"
	brokers, cl := newCluster(t, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for i := range 300 { // many records, in every partition: not one fetch's worth
		p := int32(i % 3)
		st := Status{Feature: fmt.Sprintf("g%d@1", i), Topic: "tx", Partition: p, State: StateReady}
		if i == 299 {
			st = Status{Feature: "f@2", Topic: "tx", Partition: p, State: StateWarmingUp}
		}
		r, err := StatusRecord(topic, st)
		if err != nil {
			t.Fatal(err)
		}
		r.Partition = p
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	v := NewView()
	type seen struct {
		ready    bool
		statuses int
	}
	caught := make(chan seen, 2)
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, kafka.Conn{Brokers: brokers}, topic, v, zap.NewNop(), func() {
			n := 0
			for i := range 299 {
				n += len(v.Statuses(fmt.Sprintf("g%d@1", i)))
			}
			caught <- seen{ready: v.Ready("f@2"), statuses: n + len(v.Statuses("f@2"))}
		})
	}()
	select {
	case got := <-caught:
		if got.ready || got.statuses != 300 {
			t.Fatalf("at catch-up: f@2 ready=%v with %d of 300 statuses applied; want warming up, all applied", got.ready, got.statuses)
		}
	case <-ctx.Done():
		t.Fatal("Follow never reported catching up")
	}
	// It keeps following, and reports catching up only once.
	r, err := StatusRecord(topic, Status{Feature: "f@2", Topic: "tx", Partition: 2, State: StateReady})
	if err != nil {
		t.Fatal(err)
	}
	r.Partition = 2
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for !v.Ready("f@2") {
		if ctx.Err() != nil {
			t.Fatal("a later status was not applied")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(caught) != 0 {
		t.Fatal("caughtUp was called more than once")
	}
}

// An absent or empty registry topic is caught up at once.
func TestFollowAnEmptyRegistryIsCaughtUpAtOnce(t *testing.T) {
	brokers, _ := newCluster(t, "empty")
	for _, topic := range []string{"empty", "absent"} {
		t.Run(topic, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			caught := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- Follow(ctx, kafka.Conn{Brokers: brokers}, topic, NewView(), zap.NewNop(), func() { close(caught) })
			}()
			select {
			case <-caught:
			case <-ctx.Done():
				t.Fatal("Follow never reported catching up")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
