// Command featurepipe is the single binary of the feature pipeline: an
// embedded broker, the event producer, stream workers, the lookup service
// and an all-in-one dev mode.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"dev", "run everything in one process on an embedded broker with demo data", runDev},
		{"kafka", "run the embedded Kafka-protocol broker (kfake)", runKafka},
		{"produce", "encode JSON lines as Avro events and produce them to a source topic", runProduce},
		{"worker", "run a stream worker (consumer group member) that maintains feature tiles", runWorker},
		{"serve", "run the lookup service (HTTP) over the feature log", runServe},
		{"token", "make a new lookup API token and print its tokens-file entry (serve --tokens)", runToken},
		{"features", "list every feature version: status, owner, source, window, freshness", runFeatures},
		{"snapshot", "make workers write a state snapshot now, or list snapshots", runSnapshot},
		{"load", "drive the lookup service at a fixed request rate and report latency percentiles", runLoad},
		{"backfill", "build point-in-time training data from the source topics", runBackfill},
		{"skew", "compare served lookups with the backfill engine's values", runSkew},
		{"datasets", "list the datasets in the catalog (every backfill registers one), newest first", runDatasets},
		{"models", "list the models in the catalog, or register one: models register --name N --version V --dataset D@V ...", runModels},
		{"history", "show every registered version of a feature: definition, hash, who and when", runHistory},
		{"lineage", "show what a catalog node comes from and what depends on it: lineage NODE [--upstream|--downstream] [--json|--dot]", runLineage},
		{"plan", "compare a changed feature file with the catalog: changes, dependents, owners (exit 2: breaks dependents)", runPlan},
		{"monitor", "print every feature's statistics, drift against its training baseline and freshness, from the workers (exit 2: a threshold crossed)", runMonitor},
		{"describe", "show everything known about a feature version, service, dataset or model: describe NODE", runDescribe},
		{"feast-repo", "write a Feast repository (feature_store.yaml, definitions) that reads featurepipe", runFeastRepo},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "featurepipe: features defined once, computed once, served the same for training and inference.")
	fmt.Fprintln(w, "\nUsage: featurepipe <command> [flags]   (featurepipe <command> --help for its flags)\n\nCommands:")
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and maps its error to an exit code:
// 0 success, 2 usage error, 1 anything else; an *exitError (plan) exits
// with its code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ee *exitError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			fmt.Fprintf(stderr, "featurepipe %s: %v\n", c.name, err)
			return ee.code
		case errors.As(err, new(*usageError)):
			fmt.Fprintf(stderr, "featurepipe %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "featurepipe %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "featurepipe: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// usageError is a bad flag or argument.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// newFlags returns a flag set whose --help prints the summary and flags.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: featurepipe %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; a parse failure is a usage error (flag already printed it).
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

func required(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		if fs.Lookup(n).Value.String() == "" {
			return usagef("--%s is required (see featurepipe %s --help)", n, fs.Name())
		}
	}
	return nil
}
