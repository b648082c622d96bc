package main

import (
	"context"
	"fmt"
	"io"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/feastrepo"
)

// runFeastRepo writes a Feast repository for the feature file.
func runFeastRepo(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("feast-repo", "--config F --out DIR --url http://HOST:PORT --flight HOST:PORT [--project NAME]", stderr)
	cfgPath := fs.String("config", "", "feature file (YAML)")
	out := fs.String("out", "", "directory to write the Feast repository into (created if missing; the generated files are overwritten)")
	url := fs.String("url", "", "base URL of featurepipe serve (--listen), for Feast's remote online store")
	flightAddr := fs.String("flight", "", "host:port of featurepipe serve --flight, for Feast's remote offline store")
	project := fs.String("project", "featurepipe", "Feast project name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "config", "out", "url", "flight"); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if err := feastrepo.Write(*out, cfg, feastrepo.Options{Project: *project, URL: *url, Flight: *flightAddr,
		Warn: func(msg string) { fmt.Fprintf(stderr, "warning: %s\n", msg) }}); err != nil {
		return usagef("%v", err)
	}
	fmt.Fprintf(stdout, "wrote %s/%s and %s/%s; next: cd %s && feast apply\n", *out, feastrepo.StoreYAML, *out, feastrepo.Definitions, *out)
	return nil
}
