package config

import (
	"errors"
	"strings"
	"testing"
)

// rekeyHeader declares a single-key and a composite entity and a source
// whose Kafka key identifies users.
const rekeyHeader = `entities:
  - name: user
    key: user_id
  - name: merchant
    key: merchant_id
  - name: user_merchant
    keys: [user_id, merchant_id]
sources:
  - name: transactions
    topic: transactions
    schema: transaction.avsc
    event_time: ts
    entity: user
features:
`

func rekeyFeature(name, entity string) string {
	return "  - {name: " + name + ", version: 1, entity: " + entity + ", source: transactions, aggregation: sum, field: amount, window: 7d, owner: o, description: d}\n"
}

func TestSourceFeedsSeveralEntitiesThroughRepartitionTopics(t *testing.T) {
	f := mustParse(t, rekeyHeader+rekeyFeature("by_user", "user")+rekeyFeature("by_pair", "user_merchant")+
		rekeyFeature("by_merchant", "merchant")+rekeyFeature("by_pair_2", "user_merchant"))
	src, _ := f.Source("transactions")
	if src.Entity == nil || src.Entity.Name != "user" || !src.EntityDeclared {
		t.Fatalf("source entity = %+v (declared %v), want user, declared", src.Entity, src.EntityDeclared)
	}
	pair, _ := f.Entity("user_merchant")
	if !pair.Composite() || pair.Key != "" || strings.Join(pair.Keys, ",") != "user_id,merchant_id" || pair.KeyList() != "[user_id, merchant_id]" {
		t.Errorf("user_merchant = %+v, want keys [user_id merchant_id] and no single Key", pair)
	}
	if u, _ := f.Entity("user"); u.Composite() || u.Key != "user_id" || len(u.Keys) != 1 {
		t.Errorf("user = %+v, want the single key user_id", u)
	}
	reps := f.Repartitions()
	if len(reps) != 2 {
		t.Fatalf("Repartitions = %d, want 2 (user_merchant, merchant)", len(reps))
	}
	want := []struct{ topic, entity, features string }{
		{"featurepipe.repartition.transactions.user_merchant", "user_merchant", "by_pair@1,by_pair_2@1"},
		{"featurepipe.repartition.transactions.merchant", "merchant", "by_merchant@1"},
	}
	for i, w := range want {
		r := reps[i]
		var ids []string
		for _, ft := range r.Features {
			ids = append(ids, ft.ID)
			if ft.Repartition != r {
				t.Errorf("%s.Repartition = %p, want %s", ft.ID, ft.Repartition, r.Topic)
			}
		}
		if r.Topic != w.topic || r.Entity.Name != w.entity || r.Source != src || strings.Join(ids, ",") != w.features {
			t.Errorf("Repartitions[%d] = %s %s %v, want %s %s %s", i, r.Topic, r.Entity.Name, ids, w.topic, w.entity, w.features)
		}
	}
	if ft, _ := f.Feature("by_user"); ft.Repartition != nil {
		t.Errorf("by_user is keyed by the source's Kafka key, yet has repartition %s", ft.Repartition.Topic)
	}
	if len(src.Features) != 4 {
		t.Errorf("source feeds %d features, want all 4", len(src.Features))
	}
}

func TestSourceEntityDefaultsToItsFeaturesEntity(t *testing.T) {
	// Without entity: on the source (every file before re-keying), the one
	// entity of its features is its Kafka key's, and nothing is re-keyed.
	doc := strings.Replace(rekeyHeader, "    entity: user\n", "", 1) + rekeyFeature("by_pair", "user_merchant")
	f := mustParse(t, doc)
	src, _ := f.Source("transactions")
	if src.Entity == nil || src.Entity.Name != "user_merchant" || src.EntityDeclared || len(f.Repartitions()) != 0 {
		t.Errorf("source entity %v (declared %v), %d repartitions; want user_merchant, undeclared, none", src.Entity, src.EntityDeclared, len(f.Repartitions()))
	}
	// A declared entity without features of its own: everything re-keyed.
	f = mustParse(t, rekeyHeader+rekeyFeature("by_merchant", "merchant"))
	if src, _ := f.Source("transactions"); src.Entity.Name != "user" || len(src.Repartitions) != 1 {
		t.Errorf("source entity %s with %d repartitions; want user with 1", src.Entity.Name, len(src.Repartitions))
	}
}

func TestRekeyConfigErrors(t *testing.T) {
	pairFeature := rekeyFeature("by_pair", "user_merchant")
	tests := []struct {
		name, doc, field, msg string
	}{
		{
			name:  "key and keys together",
			doc:   strings.Replace(rekeyHeader, "keys: [user_id, merchant_id]", "key: user_id\n    keys: [user_id, merchant_id] # want", 1) + pairFeature,
			field: "entities[2].keys",
			msg:   "give key (one field) or keys (a list of fields), not both",
		},
		{
			name:  "neither key nor keys",
			doc:   strings.Replace(rekeyHeader, "  - name: user_merchant\n    keys: [user_id, merchant_id]\n", "  - name: user_merchant # want\n", 1) + pairFeature,
			field: "entities[2].key",
			msg:   "required: the event field that identifies the entity (key: user_id), or the fields that together do",
		},
		{
			name:  "empty keys",
			doc:   strings.Replace(rekeyHeader, "keys: [user_id, merchant_id]", "keys: [] # want", 1) + pairFeature,
			field: "entities[2].keys",
			msg:   "required:",
		},
		{
			name:  "a key field listed twice",
			doc:   strings.Replace(rekeyHeader, "keys: [user_id, merchant_id]", "keys: [user_id, user_id] # want", 1) + pairFeature,
			field: "entities[2].keys[1]",
			msg:   `field "user_id" is listed twice`,
		},
		{
			name:  "a key field that is not a name",
			doc:   strings.Replace(rekeyHeader, "keys: [user_id, merchant_id]", "keys: [user_id, [merchant_id]] # want", 1) + pairFeature,
			field: "entities[2].keys[1]",
			msg:   "expected an event field name; got a list",
		},
		{
			name:  "a composite key field missing from the source's schema",
			doc:   strings.Replace(rekeyHeader, "keys: [user_id, merchant_id]", "keys: [user_id, shop_id]", 1) + strings.Replace(pairFeature, "entity: user_merchant", "entity: user_merchant # want\n   ", 1),
			field: "features[0].entity",
			msg:   `entity "user_merchant" is keyed by field "shop_id", which is not in schema featurepipe.demo.Transaction of source "transactions"; fields: user_id, merchant_id, amount, currency, ts`,
		},
		{
			name:  "a composite key field of an unusable type",
			doc:   strings.Replace(rekeyHeader, "keys: [user_id, merchant_id]", "keys: [user_id, amount]", 1) + strings.Replace(pairFeature, "entity: user_merchant", "entity: user_merchant # want\n   ", 1),
			field: "features[0].entity",
			msg:   `entity "user_merchant" is keyed by field "amount", which is of type double in schema featurepipe.demo.Transaction of source "transactions"; an entity key must be a string, long or int`,
		},
		{
			name:  "a source's declared entity must exist",
			doc:   strings.Replace(rekeyHeader, "    entity: user\n", "    entity: usr # want\n", 1) + pairFeature,
			field: "sources[0].entity",
			msg:   `unknown entity "usr"; did you mean "user"?`,
		},
		{
			name:  "a source's declared entity's keys must be in its schema",
			doc:   strings.Replace(strings.Replace(rekeyHeader, "key: merchant_id", "key: shop_id", 1), "    entity: user\n", "    entity: merchant # want\n", 1) + pairFeature,
			field: "sources[0].entity",
			msg:   `entity "merchant" is keyed by field "shop_id", which is not in schema`,
		},
		{
			name:  "several entities without a declared Kafka key entity",
			doc:   strings.Replace(rekeyHeader, "    entity: user\n", "", 1) + rekeyFeature("by_user", "user") + strings.Replace(pairFeature, "entity: user_merchant", "entity: user_merchant # want\n   ", 1),
			field: "features[1].entity",
			msg:   "add `entity: user` to source \"transactions\" (line 9), and the events of \"user_merchant\" features are then re-keyed by [user_id, merchant_id] through the internal topic featurepipe.repartition.transactions.user_merchant",
		},
		{
			name:  "repartition topic prefix is reserved",
			doc:   strings.Replace(rekeyHeader, "topic: transactions", "topic: featurepipe.repartition.mine # want", 1) + pairFeature,
			field: "sources[0].topic",
			msg:   `reserved for featurepipe's repartition topics`,
		},
		{
			name: "repartition topic longer than Kafka allows",
			doc: strings.ReplaceAll(rekeyHeader, "user_merchant", "user_merchant"+strings.Repeat("x", 230)) +
				strings.Replace(strings.ReplaceAll(pairFeature, "user_merchant", "user_merchant"+strings.Repeat("x", 230)), "source:", "# want\n    source:", 1),
			field: "features[0].entity",
			msg:   "would be longer than Kafka's 249 characters",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantLine := markedLine(t, tt.doc)
			f, err := Parse("features.yaml", []byte(tt.doc), schemaFS(t), ".")
			if f != nil {
				t.Errorf("Parse returned a *File alongside error %v", err)
			}
			var e *Error
			if !errors.As(err, &e) || errors.As(err, new(Errors)) {
				t.Fatalf("got %v; want exactly one problem\n--- file ---\n%s", err, tt.doc)
			}
			if e.Line != wantLine || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got  %v\nwant features.yaml:%d: %s: ...%s...", e, wantLine, tt.field, tt.msg)
			}
		})
	}
}

func TestRepartitionPrefix(t *testing.T) {
	f := mustParse(t, "kafka:\n  repartition_prefix: team-a.rekey.\n"+rekeyHeader+rekeyFeature("by_merchant", "merchant"))
	if got := f.Repartitions()[0].Topic; got != "team-a.rekey.transactions.merchant" {
		t.Errorf("repartition topic %s, want team-a.rekey.transactions.merchant", got)
	}
	_, err := Parse("features.yaml", []byte("kafka:\n  repartition_prefix: bad/prefix\n"+rekeyHeader+rekeyFeature("by_merchant", "merchant")), schemaFS(t), ".")
	if err == nil || !strings.Contains(err.Error(), "features.yaml:2: kafka.repartition_prefix: invalid Kafka topic name") {
		t.Errorf("a prefix with a slash: %v", err)
	}
}
