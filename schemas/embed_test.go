package schemas_test

import (
	"bufio"
	"bytes"
	"io/fs"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/schemas"
)

func TestFilesHoldTheDemoFeatureFileAndItsSchemas(t *testing.T) {
	for _, name := range []string{"demo.yaml", "transaction.avsc", "login.avsc"} {
		if b, err := fs.ReadFile(schemas.Files, name); err != nil || len(b) == 0 {
			t.Errorf("Files: %s: %v (len %d)", name, err, len(b))
		}
	}
	avsc, err := fs.Glob(schemas.Files, "*.avsc")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range avsc {
		if _, err := schemas.Load(schemas.Files, name); err != nil {
			t.Errorf("embedded schema does not parse: %v", err)
		}
	}
}

func TestDemoFeatureFileNamesEmbeddedSchemas(t *testing.T) {
	demo, err := schemas.Files.ReadFile("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	sc := bufio.NewScanner(bytes.NewReader(demo))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "schema:"); ok {
			named = append(named, strings.TrimSpace(v))
		}
	}
	if len(named) != 2 {
		t.Fatalf("demo.yaml names schemas %v, want the 2 sources' schemas", named)
	}
	for _, name := range named {
		if _, err := schemas.Load(schemas.Files, name); err != nil {
			t.Errorf("demo.yaml names %s: %v", name, err)
		}
	}
}
