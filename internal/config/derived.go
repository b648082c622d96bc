package config

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
	"gopkg.in/yaml.v3"

	"github.com/featurepipe/featurepipe/aggregations"
)

// Derivation is a derived feature's definition: a CEL (https://cel.dev)
// expression over other features of the same entity, such as
// "txn_amount_sum_1h / txn_amount_avg_30d", computed when it is read (at
// lookup time and in backfill, by Eval) rather than aggregated by workers.
//
// The expression names its inputs by bare feature name. Each name reads one
// version, fixed at load: the version pinned in the feature's inputs list
// (inputs: [txn_amount_avg_30d@2]), else the version a bare name resolves to
// in the file (File.Feature: the newest version that is not deprecated).
// The versions read are part of the definition hash, so a file that adds a
// newer version of an input changes the derived feature's definition: the
// catalog then refuses it under the same version (bump it, or pin the
// input). An input may itself be derived; cycles are load errors.
//
// Every input is a CEL nullable double (wrapper(double)): a count reads as
// 3.0, and is null when its value is (an empty avg, min, max or last without
// a default). The result is a number (double, int or uint, as float64) or
// null. Null propagates: an operator applied to a null input fails, and a
// failed evaluation is null, unless the expression handles the null
// (txn_amount_avg_30d == null ? 0.0 : txn_amount_avg_30d). A non-finite
// result, such as a division by zero, is null.
//
// A Derivation is immutable and safe for concurrent use; compiled once at
// load.
type Derivation struct {
	// Expr is the expression as written (surrounding space trimmed).
	Expr string
	// Inputs are the feature versions the expression reads, one per name,
	// sorted by name. Each has the derived feature's entity.
	Inputs []*Feature
	prg    cel.Program
}

// DerivedInput is the activation Eval reads input values from: Values[i]
// (valid when Valid[i]) is Inputs[i]'s value. Reset it for a Derivation,
// Set every input, then Eval. Reuse one per goroutine and nesting depth:
// Reset keeps its capacity, so evaluating allocates only what CEL does.
type DerivedInput struct {
	d      *Derivation
	Values []float64
	Valid  []bool
}

// Reset prepares in for d's inputs, all null.
func (in *DerivedInput) Reset(d *Derivation) {
	in.d = d
	n := len(d.Inputs)
	if cap(in.Values) < n {
		in.Values, in.Valid = make([]float64, n), make([]bool, n)
	}
	in.Values, in.Valid = in.Values[:n], in.Valid[:n]
	clear(in.Valid)
}

// Set sets input i's value; ok false is null.
func (in *DerivedInput) Set(i int, v float64, ok bool) { in.Values[i], in.Valid[i] = v, ok }

// ResolveName implements interpreter.Activation.
func (in *DerivedInput) ResolveName(name string) (any, bool) {
	for i, f := range in.d.Inputs {
		if f.Name == name {
			if !in.Valid[i] {
				return types.NullValue, true
			}
			return types.Double(in.Values[i]), true
		}
	}
	return nil, false
}

// Parent implements interpreter.Activation; there is none.
func (in *DerivedInput) Parent() interpreter.Activation { return nil }

// Eval evaluates d over the inputs in in (Reset for d). ok false is null:
// a null result, a failed evaluation (a null input reaching an operator,
// an integer overflow) or a non-finite number (a division by zero). It is
// the one evaluation of derived features: the lookup service and backfill
// call it. Cost: CEL boxes each input read and the result (8 bytes each):
// about 300 ns and 3 allocations for "a / b" on one core
// (BenchmarkDerivedEval).
func (d *Derivation) Eval(in *DerivedInput) (value float64, ok bool) {
	out, _, err := d.prg.Eval(in)
	if err != nil {
		return 0, false
	}
	return number(out)
}

// number converts a CEL result to a finite float64, or null.
func number(v ref.Val) (float64, bool) {
	var x float64
	switch n := v.(type) {
	case types.Double:
		x = float64(n)
	case types.Int:
		x = float64(n)
	case types.Uint:
		x = float64(n)
	default: // null, or an error value
		return 0, false
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, false
	}
	return x, true
}

// IsDerived reports whether f is a derived feature (see Derivation).
func (f *Feature) IsDerived() bool { return f.Derived != nil }

// derivedDefinition is Definition for a derived feature: its entity, the
// expression and the input versions it reads.
func (f *Feature) derivedDefinition() [][2]string {
	ids := make([]string, len(f.Derived.Inputs))
	for i, in := range f.Derived.Inputs {
		ids[i] = in.ID
	}
	return [][2]string{
		{"entity", f.Entity},
		{"entity_key", f.EntityRef.Key},
		{"expression", f.Derived.Expr},
		{"inputs", strings.Join(ids, ",")},
	}
}

// derivedRefused are the keys a derived feature must not have: it reads
// other features, not events.
var derivedRefused = []string{"source", "aggregation", "field", "window", "hop", "default", "where", "k"}

// checkDerivedShape checks that a derived feature (expression:) has none of
// the keys of an aggregated one, and that inputs appears only with an
// expression.
func (d *decoder) checkDerivedShape(it featureItem) {
	m := it.m
	if m.get("expression") == nil {
		if n := m.get("inputs"); n != nil {
			d.addf(n.Line, m.field("inputs"), "applies to a derived feature only: add an expression, or remove inputs")
		}
		return
	}
	for _, key := range derivedRefused {
		if m.get(key) != nil {
			d.addf(m.lineOf(key), m.field(key), "a derived feature (expression) has no %s of its own: it computes from the features its expression names; remove %s, or remove expression to aggregate events", key, key)
		}
	}
}

// buildDerived compiles the expression of every derived feature once all
// features are known: it resolves the input versions, type-checks the
// expression over them, and refuses cycles.
func (d *decoder) buildDerived(f *File) {
	envs := map[string]*cel.Env{} // per entity
	var derived []featureItem
	for _, it := range d.features {
		if it.m.get("expression") != nil {
			derived = append(derived, it)
		}
	}
	for _, it := range derived {
		if drv := d.compileDerived(f, it, envs); drv != nil {
			it.f.Derived = drv
		}
	}
	d.checkCycles(derived)
}

// compileDerived compiles one derived feature's expression, or records why
// it cannot and returns nil.
func (d *decoder) compileDerived(f *File, it featureItem, envs map[string]*cel.Env) *Derivation {
	ft, m := it.f, it.m
	field, line := m.field("expression"), m.lineOf("expression")
	expr := strings.TrimSpace(it.expression)
	if n := m.get("expression"); n.Kind != yaml.ScalarNode {
		return nil // its type already reported
	}
	if expr == "" {
		d.addf(line, field, "is empty; write an expression over other features of entity %s, e.g. \"txn_amount_sum_1h / txn_amount_avg_30d\"", ft.Entity)
		return nil
	}
	if ft.EntityRef == nil {
		return nil // reported at the entity
	}
	pins, ok := d.derivedPins(f, it)
	if !ok {
		return nil
	}
	env := envs[ft.Entity]
	if env == nil {
		opts := []cel.EnvOption{cel.CrossTypeNumericComparisons(true)}
		for _, name := range entityFeatureNames(f, ft.Entity) {
			opts = append(opts, cel.Variable(name, cel.NullableType(cel.DoubleType)))
		}
		var err error
		if env, err = cel.NewEnv(opts...); err != nil {
			d.addf(line, field, "cannot build the expression environment of entity %s: %v", ft.Entity, err)
			return nil
		}
		envs[ft.Entity] = env
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		var msgs []string
		for _, e := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("column %d: %s", e.Location.Column()+1, d.explainReference(f, ft, e.Message)))
		}
		d.addf(line, field, "%s (features of entity %s: %s)", strings.Join(msgs, "; "), ft.Entity, strings.Join(entityFeatureNames(f, ft.Entity), ", "))
		return nil
	}
	out := ast.OutputType()
	if !cel.NullableType(cel.DoubleType).IsAssignableType(out) && !cel.NullableType(cel.IntType).IsAssignableType(out) &&
		!cel.NullableType(cel.UintType).IsAssignableType(out) {
		d.addf(line, field, "%q is of type %s; a derived feature is a number: e.g. write cond ? 1.0 : 0.0 for a boolean", expr, out)
		return nil
	}
	// The names the expression reads, from the checked references.
	var names []string
	for _, r := range ast.NativeRep().ReferenceMap() {
		if r.Name != "" && !slices.Contains(names, r.Name) {
			names = append(names, r.Name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		d.addf(line, field, "%q reads no feature; a derived feature computes from other features of entity %s", expr, ft.Entity)
		return nil
	}
	drv := &Derivation{Expr: expr}
	bad := false
	for _, name := range names {
		in := pins[name]
		if in == nil {
			var err error
			if in, err = f.Feature(name); err != nil {
				d.addf(line, field, "%v", err)
				bad = true
				continue
			}
		}
		if in.Entity != ft.Entity {
			d.addf(line, field, "%s resolves to %s@%d of entity %s, not %s: a derived feature reads features of its own entity", name, in.Name, in.Version, in.Entity, ft.Entity)
			bad = true
			continue
		}
		if in == ft {
			d.addf(line, field, "reads itself (%s): a derived feature cannot depend on its own value", name)
			bad = true
			continue
		}
		if in.Aggregation.List() || in.Aggregation == aggregations.TopK {
			d.addf(line, field, "%s is a list (%s): a derived feature reads numbers only", name, in.Aggregation)
			bad = true
			continue
		}
		if in.Bucket != "" {
			d.addf(line, field, "%s is bucketed by %s (a map of buckets): a derived feature reads numbers only", name, in.Bucket)
			bad = true
			continue
		}
		if in.OutputType() == aggregations.TypeString {
			d.addf(line, field, "%s is a string (%s of string field %s): a derived feature reads numbers only", name, in.Aggregation, in.Field)
			bad = true
			continue
		}
		drv.Inputs = append(drv.Inputs, in)
	}
	for name := range pins {
		if !slices.Contains(names, name) {
			d.addf(m.lineOf("inputs"), m.field("inputs"), "%s is pinned but the expression does not read %s; remove it from inputs", pins[name].Name+"@"+strconv.Itoa(pins[name].Version), name)
			bad = true
		}
	}
	if bad {
		return nil
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		d.addf(line, field, "cannot compile %q: %v", expr, err)
		return nil
	}
	drv.prg = prg
	return drv
}

// derivedPins reads the inputs list: name@version references of the same
// entity, each name at most once. ok is false if any is invalid (recorded).
func (d *decoder) derivedPins(f *File, it featureItem) (map[string]*Feature, bool) {
	ft, m := it.f, it.m
	pins := map[string]*Feature{}
	ok := true
	for j, n := range it.inputs {
		n = deref(n)
		path := fmt.Sprintf("%s[%d]", m.field("inputs"), j)
		ref := strings.TrimSpace(n.Value)
		name, ver, pinned := strings.Cut(ref, "@")
		if v, err := strconv.Atoi(ver); n.Kind != yaml.ScalarNode || !pinned || err != nil || v < 1 {
			d.addf(n.Line, path, "%s: pin an input as name@version, e.g. %s@1; a bare name in the expression needs no entry", describe(n), name)
			ok = false
			continue
		}
		in, err := f.Feature(ref)
		switch {
		case err != nil:
			d.addf(n.Line, path, "%v", err)
			ok = false
		case pins[name] != nil:
			d.addf(n.Line, path, "%s is pinned twice; an expression reads one version of each feature", name)
			ok = false
		case in.Entity != ft.Entity:
			d.addf(n.Line, path, "%s@%d belongs to entity %s, not %s: a derived feature reads features of its own entity", in.Name, in.Version, in.Entity, ft.Entity)
			ok = false
		default:
			pins[name] = in
		}
	}
	return pins, ok
}

// explainReference rewrites CEL's "undeclared reference" to a name that is a
// feature of another entity, or no feature, into what to do.
func (d *decoder) explainReference(f *File, ft *Feature, msg string) string {
	const prefix = "undeclared reference to '"
	i := strings.Index(msg, prefix)
	if i < 0 {
		return msg
	}
	name, _, _ := strings.Cut(msg[i+len(prefix):], "'")
	for _, other := range f.Features {
		if other.Name == name {
			return fmt.Sprintf("feature %s belongs to entity %s, not %s: a derived feature reads features of its own entity", name, other.Entity, ft.Entity)
		}
	}
	hint := ""
	if c := closeNames(name, entityFeatureNames(f, ft.Entity), 1); len(c) > 0 {
		hint = fmt.Sprintf("; did you mean %q?", c[0])
	}
	return fmt.Sprintf("unknown feature %q%s", name, hint)
}

// checkCycles refuses derived features that depend on themselves through
// other derived features, naming the cycle.
func (d *decoder) checkCycles(derived []featureItem) {
	const (
		unvisited = iota
		active
		done
	)
	state := map[*Feature]int{}
	reported := map[*Feature]bool{}
	var path []*Feature
	var visit func(ft *Feature)
	visit = func(ft *Feature) {
		switch state[ft] {
		case done:
			return
		case active:
			i := slices.Index(path, ft)
			cycle := append(slices.Clone(path[i:]), ft)
			ids := make([]string, len(cycle))
			for k, c := range cycle {
				ids[k] = c.Name + "@" + strconv.Itoa(c.Version)
			}
			if !reported[ft] {
				for _, c := range cycle {
					reported[c] = true
				}
				for _, it := range derived {
					if it.f == ft {
						d.addf(it.m.lineOf("expression"), it.m.field("expression"), "cycle: %s; a derived feature cannot depend on its own value", strings.Join(ids, " -> "))
					}
				}
			}
			return
		}
		if ft.Derived == nil {
			return
		}
		state[ft] = active
		path = append(path, ft)
		for _, in := range ft.Derived.Inputs {
			visit(in)
		}
		path = path[:len(path)-1]
		state[ft] = done
	}
	for _, it := range derived {
		visit(it.f)
	}
	// A feature in a cycle must not be used: drop its derivation so that
	// nothing walks the cycle (the file is refused anyway).
	for ft := range reported {
		ft.Derived = nil
	}
}

// entityFeatureNames lists the distinct feature names of an entity, sorted.
func entityFeatureNames(f *File, entity string) []string {
	var names []string
	for _, ft := range f.Features {
		if ft.Entity == entity && !slices.Contains(names, ft.Name) {
			names = append(names, ft.Name)
		}
	}
	sort.Strings(names)
	return names
}
