package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
)

// k8sObject is the part of a Kubernetes object the checks below read.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		CompletionMode string `yaml:"completionMode"`
		Completions    int    `yaml:"completions"`
		Template       struct {
			Spec struct {
				RestartPolicy string         `yaml:"restartPolicy"`
				Containers    []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Args []string `yaml:"args"`
	Env  []struct {
		Name string `yaml:"name"`
	} `yaml:"env"`
}

// readK8s decodes every document of the deploy/kubernetes manifests
// (yaml.v3 refuses a key given twice in one document, e.g. two objects
// missing their "---" separator).
func readK8s(t *testing.T) map[string][]k8sObject {
	t.Helper()
	files, err := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes: %v", err)
	}
	out := map[string][]k8sObject{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s document %d: no apiVersion, kind or metadata.name", f, i)
			}
			out[filepath.Base(f)] = append(out[filepath.Base(f)], o)
		}
	}
	return out
}

// TestKubernetesManifests: every manifest parses, one object per document;
// the backfill Job is an Indexed Job whose pods run `featurepipe backfill
// --shard $(JOB_COMPLETION_INDEX)/N` with N its completions, every flag known
// to the backfill command and every $(VAR) of its args defined.
func TestKubernetesManifests(t *testing.T) {
	objs := readK8s(t)
	var jobs []k8sObject
	for _, o := range objs["backfill-job.yaml"] {
		if o.Kind == "Job" {
			jobs = append(jobs, o)
		}
	}
	if len(jobs) != 1 {
		t.Fatalf("backfill-job.yaml has %d Jobs, want 1", len(jobs))
	}
	job := jobs[0]
	if job.Spec.CompletionMode != "Indexed" || job.Spec.Completions < 1 || job.Spec.Template.Spec.RestartPolicy != "Never" {
		t.Fatalf("job spec: completionMode %q, completions %d, restartPolicy %q; want Indexed, >= 1, Never",
			job.Spec.CompletionMode, job.Spec.Completions, job.Spec.Template.Spec.RestartPolicy)
	}
	c := job.Spec.Template.Spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "backfill" {
		t.Fatalf("args %v: want the backfill command", c.Args)
	}
	i := slices.Index(c.Args, "--shard")
	if i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != "$(JOB_COMPLETION_INDEX)/"+strconv.Itoa(job.Spec.Completions) {
		t.Fatalf("args %v: want --shard $(JOB_COMPLETION_INDEX)/%d", c.Args, job.Spec.Completions)
	}
	defined := map[string]bool{"JOB_COMPLETION_INDEX": true} // set by the Job controller
	for _, e := range c.Env {
		defined[e.Name] = true
	}
	vars := regexp.MustCompile(`\$\(([A-Z_]+)\)`)
	for idx := 0; idx < job.Spec.Completions; idx++ {
		args := make([]string, len(c.Args))
		for j, a := range c.Args {
			args[j] = vars.ReplaceAllStringFunc(a, func(m string) string {
				name := vars.FindStringSubmatch(m)[1]
				if !defined[name] {
					t.Fatalf("arg %q uses $(%s), which the container does not define", a, name)
				}
				if name == "JOB_COMPLETION_INDEX" {
					return strconv.Itoa(idx)
				}
				return "127.0.0.1:1"
			})
		}
		if _, err := backfill.ParseShard(args[i+1]); err != nil {
			t.Fatalf("pod %d: %v", idx, err)
		}
		// Every flag parses and every required one is set: the command
		// gets as far as loading the feature file, absent here.
		code, _, stderr := execCLI(args...)
		if code == 0 || strings.Contains(stderr, "flag provided but not defined") || !strings.Contains(stderr, "/etc/featurepipe/features.yaml") {
			t.Fatalf("pod %d: featurepipe %v: exit %d\n%s\nwant it to fail only on the absent feature file", idx, args, code, stderr)
		}
	}
}
