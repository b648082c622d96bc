package registry

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

// Services and feature metadata go through the one codec and decode to what
// was encoded; unlike definitions, the last record of a key wins.
func TestServiceAndMetaCodecRoundTrip(t *testing.T) {
	s := Service{Name: "fraud_scoring", Owner: "fraud-team", Description: "d", Entity: "user",
		Features: []string{"spend", "count@2"}, Resolved: []string{"spend@3", "count@2"}, Models: []string{"fraud-gbm"},
		RegisteredAt: time.UnixMilli(7).UTC(), RegisteredBy: "ann via w1"}
	m := FeatureMeta{Feature: "spend@1", Owner: "t", Description: "d", Tags: []string{"a", "b"}, Deprecated: true,
		ReplacedBy: "spend@2", Sunset: "2027-01-31", RegisteredAt: time.UnixMilli(8).UTC(), RegisteredBy: "bob"}
	sr, err := ServiceRecord("t", s)
	if err != nil {
		t.Fatal(err)
	}
	mr, err := MetaRecord("t", m)
	if err != nil {
		t.Fatal(err)
	}
	if string(sr.Key) != "service/fraud_scoring" || string(mr.Key) != "meta/spend@1" {
		t.Fatalf("keys %q %q", sr.Key, mr.Key)
	}
	gs, err := DecodeRecord(sr.Key, sr.Value)
	if err != nil || gs.Kind != KindService || gs.ID != "fraud_scoring" || !reflect.DeepEqual(*gs.Service, s) {
		t.Fatalf("service decoded %+v, %v", gs, err)
	}
	gm, err := DecodeRecord(mr.Key, mr.Value)
	if err != nil || gm.Kind != KindMeta || gm.ID != "spend@1" || !reflect.DeepEqual(*gm.Meta, m) {
		t.Fatalf("meta decoded %+v, %v", gm, err)
	}

	v := NewView()
	for _, r := range [][2][]byte{{sr.Key, sr.Value}, {mr.Key, mr.Value}} {
		if err := v.Apply(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	s2, m2 := s, m
	s2.Owner, m2.Deprecated, m2.ReplacedBy, m2.Sunset = "risk-team", false, "", ""
	sr2, _ := ServiceRecord("t", s2)
	mr2, _ := MetaRecord("t", m2)
	_ = v.Apply(sr2.Key, sr2.Value)
	_ = v.Apply(mr2.Key, mr2.Value)
	if got, _ := v.Service("fraud_scoring"); got.Owner != "risk-team" {
		t.Fatalf("the last service record must win: owner %q", got.Owner)
	}
	if got, _ := v.Meta("spend@1"); got.Deprecated || got.ReplacedBy != "" {
		t.Fatalf("the last metadata record must win: %+v", got)
	}
	_ = v.Apply(sr.Key, nil)
	if _, ok := v.Service("fraud_scoring"); ok || len(v.Services()) != 0 {
		t.Fatal("a tombstone must delete the service")
	}
}

const fileRecordsFeatures = `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: spend, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d, deprecated: true, replaced_by: spend@2, sunset: 2027-01-31}
  - {name: spend, version: 2, entity: user, source: transactions, aggregation: sum, field: amount, window: 30d, owner: t2, description: d2, tags: [money]}
services:
  - name: fraud_scoring
    owner: fraud-team
    description: the fraud model's features
    features: [spend]
    models: [fraud-gbm]
  - name: pinned
    owner: risk-team
    description: pinned
    features: [spend@1]
`

// A worker start (Register) records the file's services, with bare
// references resolved, and every version's metadata; a second start with
// the same file writes nothing new; a start with a file that dropped a
// service and a version marks them retired, and a changed owner replaces
// the earlier one without a version bump.
func TestRegisterRecordsServicesAndMetadata(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, testkit.KafkaSection(1)+fileRecordsFeatures, testkit.SetupOptions{})
	brokers := k.Brokers
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	topic := cfg.Kafka.RegistryTopic
	if err := Register(ctx, cl, topic, cfg, NewView(), "ann via w1"); err != nil {
		t.Fatal(err)
	}
	v, err := Load(ctx, kafka.Conn{Brokers: brokers}, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, ok := v.Service("fraud_scoring")
	if !ok || svc.Owner != "fraud-team" || !slices.Equal(svc.Features, []string{"spend"}) ||
		!slices.Equal(svc.Resolved, []string{"spend@2"}) || !slices.Equal(svc.Models, []string{"fraud-gbm"}) ||
		svc.Entity != "user" || svc.RegisteredBy != "ann via w1" || svc.RegisteredAt.IsZero() || svc.Retired {
		t.Fatalf("recorded service: %+v (found %v)", svc, ok)
	}
	if p, ok := v.Service("pinned"); !ok || !slices.Equal(p.Resolved, []string{"spend@1"}) {
		t.Fatalf("recorded pinned service: %+v (found %v)", p, ok)
	}
	m1, ok := v.Meta("spend@1")
	if !ok || !m1.Deprecated || m1.ReplacedBy != "spend@2" || m1.Sunset != "2027-01-31" || m1.Owner != "t" {
		t.Fatalf("spend@1 metadata: %+v (found %v)", m1, ok)
	}
	if m2, ok := v.Meta("spend@2"); !ok || m2.Owner != "t2" || !slices.Equal(m2.Tags, []string{"money"}) || m2.Deprecated {
		t.Fatalf("spend@2 metadata: %+v (found %v)", m2, ok)
	}
	firstAt := svc.RegisteredAt

	// The same file again: nothing changes, registered_at stays.
	if err := Register(ctx, cl, topic, cfg, v, "bob via w2"); err != nil {
		t.Fatal(err)
	}
	v, err = Load(ctx, kafka.Conn{Brokers: brokers}, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := v.Service("fraud_scoring"); !s.RegisteredAt.Equal(firstAt) || s.RegisteredBy != "ann via w1" {
		t.Fatalf("an unchanged service was rewritten: %+v", s)
	}

	// A new file: pinned removed, spend@1 removed (the service's pin moves
	// to spend@2), fraud_scoring's owner changed.
	next := *cfg
	next.Features = []*config.Feature{cfg.Features[1]}
	fs := *cfg.Services[0]
	fs.Owner = "risk-team"
	next.Services = []*config.Service{&fs}
	if err := Register(ctx, cl, topic, &next, v, "cy via w3"); err != nil {
		t.Fatal(err)
	}
	v, err = Load(ctx, kafka.Conn{Brokers: brokers}, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := v.Service("fraud_scoring"); s.Owner != "risk-team" || s.RegisteredBy != "cy via w3" || s.Retired {
		t.Fatalf("changed service: %+v", s)
	}
	if p, ok := v.Service("pinned"); !ok || !p.Retired || p.Owner != "risk-team" {
		t.Fatalf("removed service: %+v (found %v), want it kept and retired", p, ok)
	}
	if m, ok := v.Meta("spend@1"); !ok || !m.Retired || m.Owner != "t" {
		t.Fatalf("removed version's metadata: %+v (found %v), want it kept and retired", m, ok)
	}
	if _, ok := v.Definition("spend@1"); !ok {
		t.Fatal("a removed version must stay registered")
	}
}
