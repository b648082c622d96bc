package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/featurepipe/featurepipe/schemas"
)

// Filter is a feature's compiled where expression: a CEL
// (https://cel.dev) boolean expression over the fields of its source's Avro
// schema, type-checked against that schema when the file is loaded and
// compiled once. Only events for which it is true count toward the feature.
//
// The fields a where may name are the source schema's fields of type
// double, float (CEL double), int, long (CEL int; a timestamp-millis long is
// its epoch milliseconds), string, enum (CEL string, the symbol) and
// boolean. A nullable one (an Avro union with null) is CEL's nullable
// wrapper of that type, with CEL's null semantics: it compares with null
// (discount != null && discount > 0.5), and an operator applied to its null
// fails the evaluation (the record is dead-lettered, reason filter_error),
// so test for null first; CEL's && and || absorb such a failure when the
// other side decides. Record, array, map, bytes and fixed fields are
// refused at load.
//
// A Filter is immutable and safe for concurrent use. Match with a reused
// FilterInput costs one allocation per field read (CEL boxes each value
// into its own value type: 8 bytes for a double, 16 for a string; its
// evaluation frames are pooled), about 110 ns for "amount > 100.0" and 210 ns
// and 2 allocations for "amount > 100.0 && currency != 'JPY'" on one core
// (BenchmarkFilterMatch). Features without a where cost nothing.
type Filter struct {
	// Expr is the expression as written (surrounding space trimmed).
	Expr string
	// Fields are the schema fields the expression reads, sorted: what a
	// record's writer schema must provide for the filter to be evaluated.
	Fields []string
	// Total reports that the expression cannot fail on a record whose
	// fields it reads are all present and not null: it is made of the
	// fields, literals, comparisons (== != < <= > >=), && || ! ?: and in
	// over a list literal only, none of which has an error case (no
	// arithmetic to overflow or divide by zero, no conversion, no
	// function). A caller that needs only whether the record can be
	// evaluated (events.Decoder.Check) need not evaluate such a where.
	Total bool
	prg   cel.Program
}

// FilterInput is the activation a Filter reads a record's fields from: a
// decoded native Avro record (the map[string]any form of goavro, as
// schemas.Set.Decode returns). Reuse one per goroutine (set Rec before each
// Match) so that evaluating does not allocate an activation. The zero value
// has no record.
type FilterInput struct {
	Rec map[string]any
}

// ResolveName implements interpreter.Activation: the value of field name of
// Rec. A missing field is unresolved, which makes the evaluation fail.
func (in *FilterInput) ResolveName(name string) (any, bool) {
	v, ok := in.Rec[name]
	if !ok {
		return nil, false
	}
	if u, isUnion := v.(map[string]any); isUnion && len(u) == 1 { // a nullable field's non-null branch
		for _, inner := range u {
			v = inner
		}
	}
	if v == nil { // a nullable field's null
		return types.NullValue, true
	}
	if t, isTime := v.(time.Time); isTime { // timestamp-millis long
		return t.UnixMilli(), true
	}
	return v, true
}

// Parent implements interpreter.Activation; there is none.
func (in *FilterInput) Parent() interpreter.Activation { return nil }

// ProjectedInput is FilterInput for a record read with a
// schemas.Projection instead of goavro's native map: each field a where
// reads is a slot of Vals (see ProjectedTarget), and ResolveName gives it
// exactly the CEL value FilterInput gives the native record's field (a
// double or float as types.Double, an int or long, timestamp-millis
// included, as types.Int of its epoch milliseconds, a string as
// types.String, a boolean as types.Bool), so Match gives the same result
// and the same error on both. A projection reads no null (it declines such
// a record), so no value here is null. Reuse one per goroutine: it costs no
// allocation itself; CEL boxes each number it reads (8 bytes), and each
// string the first time it sees it (short strings are kept: see
// maxInterned).
type ProjectedInput struct {
	Vars []ProjectedVar      // the fields the wheres read; a short list, searched in order
	Vals []schemas.Projected // the projected record
	// Schema is the schema the record was projected with. A field of it
	// that Vars lacks sets Missed and is unresolved: the caller must then
	// evaluate on the native record (FilterInput) instead, which has every
	// field.
	Schema *schemas.Schema
	Missed bool
	// strs keeps the CEL values of the short strings seen (up to
	// maxInterned of at most maxInternedBytes each: ids and codes such as
	// currencies), so that a value seen before costs no allocation.
	strs map[string]any
}

// Bounds of ProjectedInput's interned strings: at most 256 values of at
// most 64 bytes per ProjectedInput (a few tens of KiB per goroutine).
const (
	maxInterned      = 256
	maxInternedBytes = 64
)

// ProjectedVar is one field of a ProjectedInput: its name, its slot in
// Vals and the target it was projected with (ProjectedTarget).
type ProjectedVar struct {
	Name   string
	Slot   int
	Target schemas.Target
}

// ProjectedTarget is the projection target that gives a where field f its
// CEL value (see ProjectedInput); false for a field a projection cannot
// give where's value of (an enum: projections refuse enum schemas).
func ProjectedTarget(f schemas.Field) (schemas.Target, bool) {
	switch f.Type {
	case "double", "float":
		return schemas.AsFloat, true
	case "int", "long":
		return schemas.AsInt, true
	case "string":
		return schemas.AsString, true
	case "boolean":
		return schemas.AsBool, true
	}
	return 0, false
}

// ResolveName implements interpreter.Activation (see ProjectedInput).
func (in *ProjectedInput) ResolveName(name string) (any, bool) {
	for i := range in.Vars {
		v := &in.Vars[i]
		if v.Name != name {
			continue
		}
		p := &in.Vals[v.Slot]
		switch v.Target {
		case schemas.AsFloat:
			return types.Double(p.Float), true
		case schemas.AsInt:
			return types.Int(p.Int), true
		case schemas.AsString:
			if v, ok := in.strs[string(p.Str)]; ok { // no allocation: the key is not kept
				return v, true
			}
			var v any = types.String(p.Str)
			if len(p.Str) <= maxInternedBytes && len(in.strs) < maxInterned {
				if in.strs == nil {
					in.strs = make(map[string]any)
				}
				in.strs[string(p.Str)] = v
			}
			return v, true
		case schemas.AsBool:
			return types.Bool(p.Bool), true
		}
		in.Missed = true // defensive: not a target ProjectedTarget gives
		return nil, false
	}
	if _, ok := in.Schema.Field(name); ok {
		in.Missed = true
	}
	return nil, false
}

// Parent implements interpreter.Activation; there is none.
func (in *ProjectedInput) Parent() interpreter.Activation { return nil }

// Match evaluates the filter on the fields vars resolves: a *FilterInput
// (a native record), or any other activation that resolves each field the
// schema declares to the CEL value FilterInput gives for it (types.Double,
// types.Int, types.String, types.Bool, types.NullValue), so that both give
// the same result and the same error. An error means the record cannot be
// evaluated (a field missing or of another type than the schema says, an
// integer overflow, a division by zero, ...); callers dead-letter such a
// record rather than guess.
func (f *Filter) Match(vars interpreter.Activation) (bool, error) {
	out, _, err := f.prg.Eval(vars)
	if err != nil {
		return false, fmt.Errorf("where %q: %w", f.Expr, err)
	}
	b, ok := out.(types.Bool)
	if !ok { // defensive: the type checker proved the result boolean
		return false, fmt.Errorf("where %q: result is %s, not a bool", f.Expr, out.Type())
	}
	return bool(b), nil
}

// celType is the CEL type a where sees for an Avro field, or nil (with the
// reason) when where cannot use the field.
func celType(f schemas.Field) (*cel.Type, string) {
	var t *cel.Type
	switch f.Type {
	case "double", "float":
		t = cel.DoubleType
	case "int", "long":
		t = cel.IntType
	case "string", "enum":
		t = cel.StringType
	case "boolean":
		t = cel.BoolType
	default:
		return nil, "fields of Avro type " + f.Type + " cannot be used in where"
	}
	if f.Nullable {
		// CEL's nullable wrapper: compares with null, and an operator
		// applied to a null value fails (so the record is dead-lettered
		// unless the where tests for null first).
		return cel.NullableType(t), ""
	}
	return t, ""
}

// filterEnvs caches one CEL environment per schema during one Load.
type filterEnvs map[*schemas.Schema]*cel.Env

// compileWhere type-checks and compiles expr against schema s. The error
// message is one line, suited to the file:line: field: message form.
func (envs filterEnvs) compileWhere(s *schemas.Schema, expr string) (*Filter, error) {
	env := envs[s]
	if env == nil {
		var opts []cel.EnvOption
		for _, f := range s.Fields {
			if t, _ := celType(f); t != nil {
				opts = append(opts, cel.Variable(f.Name, t))
			}
		}
		var err error
		if env, err = cel.NewEnv(opts...); err != nil {
			return nil, fmt.Errorf("cannot build the expression environment of schema %s: %v", s.Name, err)
		}
		envs[s] = env
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		var msgs []string
		for _, e := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("column %d: %s", e.Location.Column()+1, unsupportedField(s, e.Message)))
		}
		return nil, fmt.Errorf("%s (usable fields of schema %s: %s)", strings.Join(msgs, "; "), s.Name, fieldNames(s, func(f schemas.Field) bool { t, _ := celType(f); return t != nil }))
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("%q is of type %s; where must be a boolean expression, e.g. amount > 100.0", expr, ast.OutputType())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("cannot compile %q: %v", expr, err)
	}
	var fields []string
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if _, ok := s.Field(ref.Name); ok && len(ref.OverloadIDs) == 0 && !slices.Contains(fields, ref.Name) {
			fields = append(fields, ref.Name)
		}
	}
	slices.Sort(fields)
	return &Filter{Expr: expr, Fields: fields, Total: totalExpr(ast.NativeRep().Expr()), prg: prg}, nil
}

// totalOps are the operators Filter.Total allows: none fails on non-null
// operands of the types the checker proved.
var totalOps = map[string]bool{
	operators.Equals: true, operators.NotEquals: true, operators.Less: true, operators.LessEquals: true,
	operators.Greater: true, operators.GreaterEquals: true, operators.LogicalAnd: true, operators.LogicalOr: true,
	operators.LogicalNot: true, operators.Conditional: true, operators.In: true,
}

// totalExpr reports whether e is built only of what Filter.Total allows.
func totalExpr(e celast.Expr) bool {
	switch e.Kind() {
	case celast.IdentKind, celast.LiteralKind:
		return true
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			if !totalExpr(el) {
				return false
			}
		}
		return true
	case celast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() || !totalOps[c.FunctionName()] {
			return false
		}
		args := c.Args()
		if c.FunctionName() == operators.In && (len(args) != 2 || args[1].Kind() != celast.ListKind) {
			return false // in a map literal fails on a duplicate key
		}
		for _, a := range args {
			if !totalExpr(a) {
				return false
			}
		}
		return true
	}
	return false
}

// unsupportedField explains an undeclared reference to a field the schema
// has but where cannot use; other messages are returned unchanged.
func unsupportedField(s *schemas.Schema, msg string) string {
	for _, f := range s.Fields {
		if _, why := celType(f); why != "" && strings.Contains(msg, "undeclared reference to '"+f.Name+"'") {
			return fmt.Sprintf("field %q is %s: %s", f.Name, typeName(f), why)
		}
	}
	return msg
}
