package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/lineage"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	featureusage "github.com/featurepipe/featurepipe/pipeline/usage"
)

// planWindow is how far back plan counts a consumer's lookups.
const planWindow = 7 * 24 * time.Hour

// consumersFunc returns the keys served per feature version and consumer:
// in the last 7 days when lastWeek, else over everything the lookup log
// retains. lineage, plan and describe read consumers only through it.
type consumersFunc func(ctx context.Context, s *catalogSetup, lastWeek bool) (lineage.Consumers, error)

// readConsumers is the consumersFunc the commands use.
var readConsumers consumersFunc = lookupLogConsumers

// lookupLogConsumers reads the lookup log (the feature file's
// kafka.lookup_log_topic, else the default) with the usage package, the one
// reader of usage statistics. A lookup without a consumer counts as
// anonymous; undecodable records are skipped. Cost: one read of the whole
// topic.
func lookupLogConsumers(ctx context.Context, s *catalogSetup, lastWeek bool) (lineage.Consumers, error) {
	topic := config.DefaultLookupLogTopic
	if s.cfg != nil {
		topic = s.cfg.Kafka.LookupLogTopic
	}
	lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	stats, err := featureusage.Read(lctx, s.conn, topic, time.Now(), nil)
	if err != nil {
		return nil, fmt.Errorf("read the lookup log %s: %w", topic, err)
	}
	return lineage.Consumers(featureusage.ConsumerKeys(stats, lastWeek)), nil
}

// parseWithNode parses flags with one positional NODE before, between or
// after them.
func parseWithNode(fs *flag.FlagSet, args []string) (string, error) {
	var node string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return "", err
			}
			return "", usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if node != "" {
			return "", usagef("unexpected arguments: %s (one NODE)", strings.Join(rest, " "))
		}
		node, args = rest[0], rest[1:]
	}
	if node == "" {
		return "", usagef("a NODE is required: topic:NAME, source:NAME, feature:NAME@V, service:NAME, dataset:NAME@V, model:NAME@V or consumer:NAME")
	}
	if _, _, err := lineage.ParseNode(node); err != nil {
		return "", usagef("%v", err)
	}
	return node, nil
}

// graph reads the catalog and the consumers and builds the lineage graph.
func (s *catalogSetup) graph(ctx context.Context, lastWeek bool) (*lineage.Graph, *registry.View, lineage.Consumers, error) {
	v, err := s.view(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := readConsumers(ctx, s, lastWeek)
	if err != nil {
		return nil, nil, nil, err
	}
	return lineage.Build(s.cfg, v, c), v, c, nil
}

func runLineage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("lineage", "NODE --brokers B [--config F] [--upstream|--downstream] [--json|--dot]", stderr)
	cf := addCatalogFlags(fs)
	up := fs.Bool("upstream", false, "only what NODE comes from (default: both directions)")
	down := fs.Bool("downstream", false, "only what depends on NODE (default: both directions)")
	dot := fs.Bool("dot", false, "print a Graphviz digraph")
	node, err := parseWithNode(fs, args)
	if err != nil {
		return err
	}
	if *up && *down {
		return usagef("--upstream and --downstream exclude each other (neither: both directions)")
	}
	if *dot && *cf.asJSON {
		return usagef("--json and --dot exclude each other")
	}
	s, err := cf.setup(ctx, fs)
	if err != nil {
		return err
	}
	g, _, _, err := s.graph(ctx, false)
	if err != nil {
		return err
	}
	dir := lineage.Both
	switch {
	case *up:
		dir = lineage.Upstream
	case *down:
		dir = lineage.Downstream
	}
	sub, err := g.Walk(node, dir)
	if err != nil {
		return err
	}
	switch {
	case *cf.asJSON:
		return writeJSON(stdout, sub)
	case *dot:
		_, err := io.WriteString(stdout, sub.Dot())
		return err
	}
	_, err = io.WriteString(stdout, sub.Text())
	return err
}

// exitError carries the exit code of a command whose codes differ from
// run's defaults: plan exits 2 on a breaking plan (after printing it) and 1
// on every error, bad flags included, so that CI can tell them apart.
type exitError struct {
	err  error
	code int
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errBreaking is plan's error when a change would break dependents.
var errBreaking = errors.New("the plan removes or redefines something that has dependents (or redefines a version in place)")

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := plan(ctx, args, stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return err
	case errors.Is(err, errBreaking):
		return &exitError{err, 2}
	}
	return &exitError{err, 1}
}

func plan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("plan", "--config NEW.yaml --brokers B [--current RUNNING.yaml] [--json]", stderr)
	cf := addCatalogFlags(fs)
	current := fs.String("current", "", "the feature file running now (optional override): its services, owners and deprecations instead of those the catalog records (every worker start records its file's)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "config"); err != nil {
		return err
	}
	s, err := cf.setup(ctx, fs)
	if err != nil {
		return err
	}
	var cur *config.File
	if *current != "" {
		if cur, err = config.Load(*current); err != nil {
			return fmt.Errorf("--current: %w", err)
		}
	}
	v, err := s.view(ctx)
	if err != nil {
		return err
	}
	c, err := readConsumers(ctx, s, true)
	if err != nil {
		return err
	}
	p := lineage.Diff(s.cfg, v, cur, c)
	if *cf.asJSON {
		err = writeJSON(stdout, p)
	} else {
		_, err = io.WriteString(stdout, p.Text())
	}
	if err != nil {
		return err
	}
	if p.Breaking {
		return errBreaking
	}
	return nil
}

func runDescribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("describe", "NODE --brokers B [--config F] [--json]", stderr)
	cf := addCatalogFlags(fs)
	node, err := parseWithNode(fs, args)
	if err != nil {
		return err
	}
	s, err := cf.setup(ctx, fs)
	if err != nil {
		return err
	}
	g, v, c, err := s.graph(ctx, false)
	if err != nil {
		return err
	}
	d, err := lineage.Describe(node, g, s.cfg, v, c)
	if err != nil {
		return err
	}
	if *cf.asJSON {
		return writeJSON(stdout, d)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, f := range d.Fields() {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], f[1])
	}
	return tw.Flush()
}
