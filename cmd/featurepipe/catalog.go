package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// catalogFlags are the flags every catalog command shares: where the
// catalog (the registry topic) is.
type catalogFlags struct {
	brokers *string
	config  *string
	asJSON  *bool
}

func addCatalogFlags(fs *flag.FlagSet) *catalogFlags {
	return &catalogFlags{
		brokers: fs.String("brokers", "", "comma-separated Kafka bootstrap brokers (required)"),
		config:  fs.String("config", "", "feature file (YAML): its kafka.registry_topic is the catalog (default topic: "+config.DefaultRegistryTopic+"), its kafka.security how to connect (default: plaintext)"),
		asJSON:  fs.Bool("json", false, "print JSON (one array) for scripts"),
	}
}

// catalogSetup is what catalogFlags.load loaded.
type catalogSetup struct {
	conn  kafka.Conn   // --brokers with --config's kafka.security
	cfg   *config.File // nil without --config
	topic string
}

func (cf *catalogFlags) setup(ctx context.Context, fs *flag.FlagSet) (*catalogSetup, error) {
	if err := required(fs, "brokers"); err != nil {
		return nil, err
	}
	var s catalogSetup
	brokers, err := kafka.ParseBrokers(*cf.brokers)
	if err != nil {
		return nil, usagef("%v", err)
	}
	s.topic = config.DefaultRegistryTopic
	if *cf.config != "" {
		if s.cfg, err = config.Load(*cf.config); err != nil {
			return nil, err
		}
		s.topic = s.cfg.Kafka.RegistryTopic
	}
	s.conn = kafka.ConnOf(brokers, s.cfg)
	if err := checkKafka(ctx, s.conn); err != nil {
		return nil, err
	}
	return &s, nil
}

// view reads the catalog to its end (bounded by 30s).
func (s *catalogSetup) view(ctx context.Context) (*registry.View, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := registry.Load(lctx, s.conn, s.topic, nil)
	if err != nil {
		return nil, fmt.Errorf("read the catalog %s: %w", s.topic, err)
	}
	return v, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runDatasets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("datasets", "--brokers B [--config F] [--name NAME] [--json]", stderr)
	cf := addCatalogFlags(fs)
	name := fs.String("name", "", "only the versions of this dataset")
	if err := parse(fs, args); err != nil {
		return err
	}
	s, err := cf.setup(ctx, fs)
	if err != nil {
		return err
	}
	v, err := s.view(ctx)
	if err != nil {
		return err
	}
	ds := v.Datasets()
	if *name != "" {
		ds = slices.DeleteFunc(ds, func(d registry.Dataset) bool { return d.Name != *name })
	}
	if *cf.asJSON {
		return writeJSON(stdout, ds)
	}
	if len(ds) == 0 {
		fmt.Fprintf(stdout, "no dataset in the catalog %s (every featurepipe backfill registers one)\n", s.topic)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATASET\tCREATED\tBY\tROWS\tFEATURES\tTIME RANGE\tPOINT-IN-TIME\tOWNER\tLOCATION\tDESCRIPTION")
	for _, d := range ds {
		feats := make([]string, len(d.Features))
		for i, f := range d.Features {
			feats[i] = f.Feature
		}
		fl := strings.Join(feats, ",")
		if d.Service != "" {
			fl = "service " + d.Service + ": " + fl
		}
		tr := "-"
		if d.TimeRange != nil {
			tr = d.TimeRange.Min.Format(time.RFC3339) + " .. " + d.TimeRange.Max.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID(), d.CreatedAt.Format(time.RFC3339), d.Actor, d.Rows,
			fl, tr, d.PointInTime, dash(d.Owner), d.Location, d.Description)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// metricFlags collects repeated --metric name=value flags.
type metricFlags map[string]float64

func (m metricFlags) String() string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+strconv.FormatFloat(m[k], 'g', -1, 64))
	}
	return strings.Join(parts, ",")
}

func (m metricFlags) Set(s string) error {
	k, v, err := registry.ParseMetric(s)
	if err != nil {
		return err
	}
	if _, dup := m[k]; dup {
		return fmt.Errorf("metric %s given twice", k)
	}
	m[k] = v
	return nil
}

func runModels(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "register" {
		return runModelsRegister(ctx, args[1:], stdout, stderr)
	}
	fs := newFlags("models", "--brokers B [--config F] [--name NAME] [--json]   |   featurepipe models register --help", stderr)
	cf := addCatalogFlags(fs)
	name := fs.String("name", "", "only the versions of this model")
	if err := parse(fs, args); err != nil {
		return err
	}
	s, err := cf.setup(ctx, fs)
	if err != nil {
		return err
	}
	v, err := s.view(ctx)
	if err != nil {
		return err
	}
	ms := v.Models()
	if *name != "" {
		ms = slices.DeleteFunc(ms, func(m registry.Model) bool { return m.Name != *name })
	}
	if *cf.asJSON {
		return writeJSON(stdout, ms)
	}
	if len(ms) == 0 {
		fmt.Fprintf(stdout, "no model in the catalog %s (featurepipe models register adds one)\n", s.topic)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tREGISTERED\tBY\tDATASET\tSERVICE\tMETRICS\tOWNER\tURI\tDESCRIPTION")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID(), m.RegisteredAt.Format(time.RFC3339), m.Actor, m.Dataset,
			m.Service, dash(metricFlags(m.Metrics).String()), dash(m.Owner), dash(m.URI), m.Description)
	}
	return tw.Flush()
}

func runModelsRegister(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("models register", "--brokers B --config F --name NAME --version N --dataset NAME@V --service S [--metric k=v ...] [--owner O] [--description D] [--limitations L] [--uri U] [--json]", stderr)
	cf := addCatalogFlags(fs)
	name := fs.String("name", "", "model name (required): letters, digits, _ . -")
	version := fs.Int("version", 0, "model version (required, >= 1); a registered name@version never changes")
	dataset := fs.String("dataset", "", "the training dataset, NAME@VERSION as `featurepipe datasets` lists it (required)")
	service := fs.String("service", "", "the feature service serving the model's features: in --config, or named by a registered dataset (required)")
	metrics := metricFlags{}
	fs.Var(metrics, "metric", "an evaluation metric name=value, e.g. auc=0.912 (repeatable)")
	owner := fs.String("owner", "", "owning team")
	desc := fs.String("description", "", "what the model does")
	limits := fs.String("limitations", "", "known limitations (where the model must not be used)")
	uri := fs.String("uri", "", "where the model file is kept (featurepipe stores only the reference)")
	actor := fs.String("actor", "", "who registers (default: the OS user)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "config", "name", "dataset", "service"); err != nil {
		return err
	}
	if *version < 1 {
		return usagef("--version must be a whole number >= 1 (see featurepipe models register --help)")
	}
	s, err := cf.setup(ctx, fs)
	if err != nil {
		return err
	}
	if *actor == "" {
		*actor = registry.OSUser()
	}
	cl, err := kafka.NewClient(s.conn, "featurepipe-models", nil)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(rctx, cl, s.cfg); err != nil {
		return err
	}
	m, created, err := registry.RegisterModel(rctx, cl, s.topic, s.cfg, registry.Model{
		Name: *name, Version: *version, Dataset: *dataset, Service: *service, Metrics: metrics,
		Owner: *owner, Description: *desc, Limitations: *limits, URI: *uri, Actor: *actor,
	})
	if errors.Is(err, registry.ErrInvalid) {
		return usagef("%v", err)
	}
	if err != nil {
		return err
	}
	if *cf.asJSON {
		return writeJSON(stdout, m)
	}
	if created {
		fmt.Fprintf(stdout, "model %s registered: dataset %s, service %s, %d feature versions\n", m.ID(), m.Dataset, m.Service, len(m.Features))
	} else {
		fmt.Fprintf(stdout, "model %s was already registered with the same content (%s by %s): nothing changed\n",
			m.ID(), m.RegisteredAt.Format(time.RFC3339), m.Actor)
	}
	return nil
}

func runHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("history", "FEATURE --brokers B [--config F] [--json]", stderr)
	cf := addCatalogFlags(fs)
	// FEATURE may come before or after the flags.
	var feature string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		feature, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	rest := fs.Args()
	if feature == "" && len(rest) > 0 {
		feature, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments: %s", strings.Join(rest, " "))
	}
	if feature == "" {
		return usagef("name the feature: featurepipe history FEATURE --brokers B (see --help)")
	}
	feature, _, _ = strings.Cut(feature, "@") // every version of it
	s, err := cf.setup(ctx, fs)
	if err != nil {
		return err
	}
	v, err := s.view(ctx)
	if err != nil {
		return err
	}
	hist := v.History(feature)
	if *cf.asJSON {
		if hist == nil {
			hist = []registry.Definition{}
		}
		return writeJSON(stdout, hist)
	}
	if len(hist) == 0 {
		return fmt.Errorf("feature %s has no registered version in the catalog %s (a worker registers each version it runs)", feature, s.topic)
	}
	for i, d := range hist {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "%s  registered %s by %s  hash %s\n", d.Feature, d.RegisteredAt.Format(time.RFC3339), dash(d.RegisteredBy), d.Hash)
		tw := tabwriter.NewWriter(stdout, 0, 4, 1, ' ', 0)
		for _, kv := range d.Fields {
			fmt.Fprintf(tw, "    %s:\t%s\n", kv[0], kv[1])
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
