package config

import (
	"errors"
	"sort"
	"strconv"
	"strings"
)

// ErrUnknownFeature is returned (wrapped, with a message listing close names)
// by [File.Feature] when a reference names no defined feature or version.
var ErrUnknownFeature = errors.New("unknown feature")

// Error is one problem found in a feature file. It prints as
//
//	<file>:<line>: <field path>: <message>
//
// for example
//
//	features.yaml:23: features[1].aggregation: unknown aggregation "avgg"; allowed: count, sum, avg, min, max, last
//
// Field is a path into the document (list indexes are zero-based) and may be
// empty for problems of the whole file, such as a YAML syntax error. Line is
// 1-based; 0 means the position is unknown and is then left out.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one feature file, sorted by line. Load and
// Parse return it when a file has more than one problem (a single problem is
// returned as a bare *Error). It prints one problem per line, and unwraps to
// its elements, so errors.As(err, new(*Error)) finds the first one.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the problems as a slice of errors, for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// result sorts the problems by line (stable, so problems on one line keep the
// order they were found in) and returns nil, a single *Error or Errors.
func (es Errors) result() error {
	switch len(es) {
	case 0:
		return nil
	case 1:
		return es[0]
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
	return es
}
