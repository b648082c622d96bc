package aggregations_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ownPackages may be imported by the packages under aggregations/ (aggtest imports
// aggregations); everything else must be in the standard library.
const ownPackages = "github.com/featurepipe/featurepipe/aggregations"

// TestImportsAreStdlibOnly enforces the package map: aggregations is pure and imports
// the standard library only. A standard-library path has no dot in its first element.
func TestImportsAreStdlibOnly(t *testing.T) {
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			first, _, _ := strings.Cut(p, "/")
			own := p == ownPackages || strings.HasPrefix(p, ownPackages+"/")
			if strings.Contains(first, ".") && !(own && filepath.Dir(path) != ".") {
				t.Errorf("%s imports %q: aggregations may import the standard library only", fset.Position(imp.Pos()), p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 5 {
		t.Fatalf("checked only %d files; is the test running in the package directory?", checked)
	}
}
