package config

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/schemas"
)

// svcFeatures declares, after header, a source of merchant events and three
// features: base@1 and txn_count@1 of user, merchant_txns@1 of merchant.
// Tests append a services: block.
const svcFeatures = header + `  - name: merchant_txns
    topic: merchant_txns
    schema: transaction.avsc
    event_time: ts
features:
` + validFeature + `  - {name: txn_count, version: 1, entity: user, source: transactions, aggregation: count, window: 1d, owner: o, description: d}
  - {name: merchant_txns, version: 1, entity: merchant, source: merchant_txns, aggregation: count, window: 1d, owner: o, description: d}
`

// validService is a valid feature service over svcFeatures; cases edit it.
const validService = `services:
  - name: fraud_scoring
    owner: fraud-team
    description: Features of the card-fraud model.
    features:
      - base@1
      - txn_count
    models: [fraud-gbm]
`

func TestServicesLoad(t *testing.T) {
	f := mustParse(t, svcFeatures+validService+`  - name: merchant_risk
    owner: risk
    description: d
    features: [merchant_txns@1]
`)
	if len(f.Services) != 2 {
		t.Fatalf("%d services, want 2", len(f.Services))
	}
	s, err := f.Service("fraud_scoring")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "fraud_scoring" || s.Owner != "fraud-team" || s.Description != "Features of the card-fraud model." ||
		!slices.Equal(s.Features, []string{"base@1", "txn_count"}) || !slices.Equal(s.Models, []string{"fraud-gbm"}) ||
		s.Entity != "user" || s.Line != 32 {
		t.Errorf("service = %+v", *s)
	}
	if m, _ := f.Service("merchant_risk"); m == nil || m.Entity != "merchant" || m.Models != nil {
		t.Errorf("merchant_risk = %+v", m)
	}
	_, err = f.Service("fraud_scorin")
	if !errors.Is(err, ErrUnknownService) || !strings.Contains(err.Error(), `did you mean "fraud_scoring"? feature services: fraud_scoring, merchant_risk`) {
		t.Errorf("unknown service error = %v", err)
	}
	noServices := mustParse(t, svcFeatures)
	if _, err := noServices.Service("x"); !errors.Is(err, ErrUnknownService) || !strings.Contains(err.Error(), "no feature services are defined") {
		t.Errorf("unknown service without services = %v", err)
	}
}

// TestInvalidServices checks each rule of the services: block on a file that
// breaks only that rule, as TestInvalidFiles does for the rest of the file.
func TestInvalidServices(t *testing.T) {
	edit := func(oldnew ...string) string {
		return svcFeatures + strings.NewReplacer(oldnew...).Replace(validService)
	}
	tests := []struct {
		name  string
		doc   string
		field string
		msg   string
	}{
		{
			name:  "unknown service key lists the allowed keys",
			doc:   edit("    models:", "    colour: red # want\n    models:"),
			field: "services[0].colour",
			msg:   `unknown key "colour"; allowed: name, owner, description, features, models`,
		},
		{
			name:  "unknown feature suggests the close name",
			doc:   edit("- txn_count", "- txn_cnt # want"),
			field: "services[0].features[1]",
			msg:   `unknown feature "txn_cnt"; did you mean "txn_count"?`,
		},
		{
			name:  "unknown version lists the versions",
			doc:   edit("- base@1", "- base@3 # want"),
			field: "services[0].features[0]",
			msg:   `unknown feature "base@3": base has versions 1`,
		},
		{
			name:  "features of mixed entities",
			doc:   edit("- txn_count", "- merchant_txns # want"),
			field: "services[0].features[1]",
			msg:   "feature merchant_txns belongs to entity merchant, but base@1 (services[0].features[0]) belongs to user; a feature service serves one entity",
		},
		{
			name:  "a feature listed twice",
			doc:   edit("- txn_count", "- base@1 # want"),
			field: "services[0].features[1]",
			msg:   "feature base@1 is listed twice (also at services[0].features[0])",
		},
		{
			name:  "service names are unique",
			doc:   edit() + "  - name: fraud_scoring # want\n    owner: o\n    description: d\n    features: [base@1]\n",
			field: "services[1].name",
			msg:   `feature service "fraud_scoring" is already defined at line 32; service names are unique`,
		},
		{
			name:  "empty feature list",
			doc:   edit("    features:\n      - base@1\n      - txn_count\n", "    features: [] # want\n"),
			field: "services[0].features",
			msg:   "required: at least one feature",
		},
		{
			name:  "missing feature list",
			doc:   edit("  - name: fraud_scoring", "  - name: fraud_scoring # want", "    features:\n      - base@1\n      - txn_count\n", ""),
			field: "services[0].features",
			msg:   "required: at least one feature",
		},
		{
			name:  "bad service name",
			doc:   edit("name: fraud_scoring", "name: Fraud-Scoring # want"),
			field: "services[0].name",
			msg:   `invalid feature service name "Fraud-Scoring"; a name is a lower-case letter followed by`,
		},
		{
			name:  "owner is required",
			doc:   edit("    owner: fraud-team\n", "", "  - name: fraud_scoring", "  - name: fraud_scoring # want"),
			field: "services[0].owner",
			msg:   "required: the team answerable for the service",
		},
		{
			name:  "a feature reference is a string",
			doc:   edit("- txn_count", "- {name: txn_count} # want"),
			field: "services[0].features[1]",
			msg:   "expected a non-empty string; got a mapping",
		},
		{
			name:  "model names are not empty",
			doc:   edit("models: [fraud-gbm]", `models: [fraud-gbm, ""] # want`),
			field: "services[0].models[1]",
			msg:   "expected a non-empty string",
		},
		{
			name: "a bare name whose versions have different entities",
			doc: strings.Replace(svcFeatures, "features:\n", "features:\n  - {name: base, version: 2, entity: merchant, source: merchant_txns, aggregation: count, window: 1d, owner: o, description: d}\n", 1) +
				strings.NewReplacer("- base@1", "- base # want", "      - txn_count\n", "").Replace(validService),
			field: "services[0].features[0]",
			msg:   "the versions of feature base belong to entities merchant, user; a bare name resolves to the newest ready version, so pin one as base@N",
		},
		{
			name:  "services is a list",
			doc:   svcFeatures + "services: fraud_scoring # want\n",
			field: "services",
			msg:   `expected a list of feature services (name, owner, description, features, models); got "fraud_scoring"`,
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
				t.Fatalf("got %v; want exactly one problem (a *Error)\n--- file ---\n%s", err, tt.doc)
			}
			if e.File != "features.yaml" || e.Line != wantLine || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got  %v\nwant features.yaml:%d: %s: ...%s...", e, wantLine, tt.field, tt.msg)
			}
		})
	}
}

// The demo file's services load and each serves the demo's one entity.
func TestDemoServices(t *testing.T) {
	f, err := LoadFS(schemas.Files, "demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Services) < 1 {
		t.Fatal("demo.yaml declares no feature service")
	}
	for _, s := range f.Services {
		if s.Entity != "user" || len(s.Features) == 0 || s.Owner == "" || s.Description == "" {
			t.Errorf("demo service %+v", *s)
		}
	}
}

// ResolveReady: a pinned version stays pinned (its readiness reported); a
// bare name takes the newest ready version that is not deprecated, then a
// ready deprecated one, else File.Feature's pick, not ready.
func TestResolveReady(t *testing.T) {
	f := mustParse(t, header+"features:\n"+validFeature+
		"  - {name: base, version: 2, entity: user, source: transactions, aggregation: count, window: 1d, owner: o, description: d}\n"+
		"  - {name: base, version: 3, entity: user, source: transactions, aggregation: count, window: 2d, owner: o, description: d}\n"+
		"  - {name: base, version: 4, entity: user, source: transactions, aggregation: count, window: 3d, deprecated: true, owner: o, description: d}\n")
	readyOnly := func(ids ...string) func(string) bool {
		return func(id string) bool { return slices.Contains(ids, id) }
	}
	for _, tc := range []struct {
		name   string
		ref    string
		ready  func(string) bool
		wantID string
		wantOK bool
	}{
		{"nil ready is File.Feature", "base", nil, "base@3", true},
		{"newest ready", "base", readyOnly("base@1", "base@2", "base@3", "base@4"), "base@3", true},
		{"newest warming: the next ready one", "base", readyOnly("base@1", "base@2", "base@4"), "base@2", true},
		{"deprecated only when no other is ready", "base", readyOnly("base@4"), "base@4", true},
		{"nothing ready: File.Feature's pick, not ready", "base", readyOnly(), "base@3", false},
		{"a pinned version stays, warming", "base@3", readyOnly("base@1"), "base@3", false},
		{"a pinned version stays, ready", "base@1", readyOnly("base@1"), "base@1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := f.ResolveReady(tc.ref, tc.ready)
			if err != nil || got.ID != tc.wantID || ok != tc.wantOK {
				t.Errorf("ResolveReady(%s) = %v %v %v, want %s %v", tc.ref, got, ok, err, tc.wantID, tc.wantOK)
			}
		})
	}
	if _, _, err := f.ResolveReady("nope", nil); !errors.Is(err, ErrUnknownFeature) {
		t.Errorf("unknown feature: %v", err)
	}
}
