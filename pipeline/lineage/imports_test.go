package lineage

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestNoIO keeps the package free of I/O: besides the standard library
// (minus networking and files), it may import only the feature file's and
// the catalog's types. Reading Kafka is the caller's job.
func TestNoIO(t *testing.T) {
	allowed := []string{"github.com/featurepipe/featurepipe/internal/config", "github.com/featurepipe/featurepipe/pipeline/registry"}
	forbidden := []string{"net", "os", "io/fs"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(p, "/")
			if strings.Contains(first, ".") && !slices.Contains(allowed, p) || slices.Contains(forbidden, first) {
				t.Errorf("%s imports %q: lineage does no I/O (allowed besides the standard library: %v)", fset.Position(imp.Pos()), p, allowed)
			}
		}
	}
	if checked < 3 {
		t.Fatalf("checked only %d files", checked)
	}
}
