package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFeastRepoCommand(t *testing.T) {
	demo := filepath.Join("..", "..", "schemas", "demo.yaml")
	out := filepath.Join(t.TempDir(), "repo")
	t.Run("writes the repository", func(t *testing.T) {
		code, stdout, stderr := execCLI("feast-repo", "--config", demo, "--out", out, "--url", "http://127.0.0.1:8080", "--flight", "127.0.0.1:8815")
		if code != 0 || !strings.Contains(stdout, "feast apply") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		yaml, err := os.ReadFile(filepath.Join(out, "feature_store.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"type: remote\n  path: http://127.0.0.1:8080", "type: remote\n  host: 127.0.0.1\n  port: 8815"} {
			if !strings.Contains(string(yaml), want) {
				t.Errorf("feature_store.yaml lacks %q:\n%s", want, yaml)
			}
		}
		py, err := os.ReadFile(filepath.Join(out, "featurepipe_features.py"))
		if err != nil || !strings.Contains(string(py), `join_keys=["user_id"]`) {
			t.Fatalf("definitions: %v\n%s", err, py)
		}
	})
	for name, tc := range map[string]struct {
		args []string
		msg  string
	}{
		"--flight is required":   {[]string{"--config", demo, "--out", out, "--url", "http://x:1"}, "--flight is required"},
		"a URL without scheme":   {[]string{"--config", demo, "--out", out, "--url", "x:1", "--flight", "x:2"}, `lookup URL "x:1": want http://host:port`},
		"a missing feature file": {[]string{"--config", "nope.yaml", "--out", out, "--url", "http://x:1", "--flight", "x:2"}, "nope.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := execCLI(append([]string{"feast-repo"}, tc.args...)...)
			if code == 0 || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("exit %d, stderr:\n%s\nwant %q", code, stderr, tc.msg)
			}
		})
	}
}
