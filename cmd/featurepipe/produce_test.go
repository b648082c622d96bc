package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/broker"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/schemas"
)

// produceFixture is an embedded broker and the demo feature file on disk.
type produceFixture struct {
	brokers string
	config  string // path of the feature file
	dir     string
}

func newProduceFixture(t *testing.T) *produceFixture {
	t.Helper()
	b, err := broker.Start(broker.Options{Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	dir := t.TempDir()
	for _, name := range []string{"demo.yaml", "transaction.avsc", "login.avsc"} {
		text, err := schemas.Files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &produceFixture{brokers: b.Addr(), config: filepath.Join(dir, "demo.yaml"), dir: dir}
}

// catalog appends extra (feature file lines; "" for none) to the fixture's
// feature file, loads it, creates its topics and returns it with a client
// of the fixture's broker, closed when the test ends.
func (f *produceFixture) catalog(t *testing.T, extra string) (*config.File, *kgo.Client) {
	t.Helper()
	if extra != "" {
		text, err := os.ReadFile(f.config)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.config, []byte(string(text)+extra), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := kafka.EnsureTopics(context.Background(), cl, cfg); err != nil {
		t.Fatal(err)
	}
	return cfg, cl
}

// input writes lines to a file in the fixture's directory.
func (f *produceFixture) input(t *testing.T, name string, lines ...string) string {
	t.Helper()
	path := filepath.Join(f.dir, name)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// produceArgs are the arguments of `featurepipe produce` for source and input.
func (f *produceFixture) produceArgs(source, input string) []string {
	return []string{"produce", "--brokers", f.brokers, "--config", f.config, "--source", source, "--input", input}
}

// records reads every record of topic and checks that each is keyed by the
// user_id it carries. It returns the keys in no particular order.
func (f *produceFixture) records(t *testing.T, topic string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kafka.NewClient(kafka.Conn{Brokers: []string{f.brokers}}, "produce-cli-test", nil,
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kafka.EndOffsets(ctx, cl, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, end := range ends {
		total += end
	}
	reg := schemas.NewSet()
	for _, name := range []string{"transaction.avsc", "login.avsc"} {
		s, err := schemas.Load(schemas.Files, name)
		if err != nil {
			t.Fatal(err)
		}
		reg.Add(s)
	}
	var keys []string
	for int64(len(keys)) < total {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records of %s before the timeout", len(keys), total, topic)
		}
		for _, r := range fs.Records() {
			_, rec, err := reg.Decode(r.Value)
			if err != nil {
				t.Fatalf("%s record: %v", topic, err)
			}
			user, err := schemas.String(rec, "user_id")
			if err != nil || user != string(r.Key) {
				t.Fatalf("%s record keyed %q carries user_id %q (%v)", topic, r.Key, user, err)
			}
			keys = append(keys, user)
		}
	}
	return keys
}

func execCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func txnLine(user string, amount float64) string {
	return fmt.Sprintf(`{"user_id":%q,"merchant_id":"m1","amount":%v,"currency":"EUR","ts":1700000000000}`, user, amount)
}

func TestProduceReportsInvalidLinesAndSendsTheRest(t *testing.T) {
	f := newProduceFixture(t)
	path := f.input(t, "events.jsonl",
		txnLine("u-1", 1),
		`{"user_id":"u-2","amount":"abc"}`, // line 2
		"",
		txnLine("u-3", 3),
		`not json`, // line 5
		`{"user_id":"u-6","merchant_id":"m1","amount":6,"currency":"EUR","ts":1700000000000,"colour":"red"}`, // line 6
		txnLine("u-7", 7),
	)
	code, stdout, stderr := execCLI(f.produceArgs("transactions", path)...)
	if code != 1 {
		t.Fatalf("exit %d, want 1 for invalid lines; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		path + `:2: field "amount": want double, got string "abc"`,
		path + ":5: ",
		path + `:6: field "colour": not in schema`,
		"featurepipe produce: 3 invalid line(s) were not sent (the 3 valid ones were)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, stderr)
		}
	}
	for _, n := range []int{1, 3, 4, 7} {
		if strings.Contains(stderr, fmt.Sprintf("%s:%d:", path, n)) {
			t.Errorf("line %d is valid or blank but was reported:\n%s", n, stderr)
		}
	}
	if !strings.Contains(stdout, "6 lines read, 3 sent to transactions, 3 invalid") {
		t.Errorf("stdout summary: %q", stdout)
	}
	keys := f.records(t, "transactions")
	if got := strings.Join(sortedKeys(keys), " "); got != "u-1 u-3 u-7" {
		t.Fatalf("topic holds %q, want the valid lines u-1 u-3 u-7", got)
	}
}

func TestProduceAllValid(t *testing.T) {
	f := newProduceFixture(t)
	path := f.input(t, "logins.jsonl",
		`{"user_id":"u-1","country":"DE","success":true,"ts":1700000000000}`,
		`{"user_id":"u-2","country":"FR","success":false,"ts":1700000000001}`,
	)
	code, stdout, stderr := execCLI(f.produceArgs("logins", path)...)
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr not empty:\n%s", stderr)
	}
	if !strings.Contains(stdout, "2 lines read, 2 sent to logins, 0 invalid") {
		t.Errorf("stdout summary: %q", stdout)
	}
	if keys := f.records(t, "logins"); strings.Join(sortedKeys(keys), " ") != "u-1 u-2" {
		t.Fatalf("topic holds %v, want u-1 u-2", keys)
	}
}

func TestProduceFromStdin(t *testing.T) {
	f := newProduceFixture(t)
	stdin, err := os.Open(f.input(t, "stdin.jsonl", txnLine("u-1", 1), `{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	saved := os.Stdin
	os.Stdin = stdin
	defer func() { os.Stdin = saved }()

	code, _, stderr := execCLI(f.produceArgs("transactions", "-")...)
	if code != 1 || !strings.Contains(stderr, "stdin:2: ") {
		t.Fatalf("exit %d, want 1 with stdin:2 reported; stderr:\n%s", code, stderr)
	}
	if keys := f.records(t, "transactions"); len(keys) != 1 || keys[0] != "u-1" {
		t.Fatalf("topic holds %v, want u-1", keys)
	}
}

func TestProduceErrors(t *testing.T) {
	f := newProduceFixture(t)
	in := f.input(t, "events.jsonl", txnLine("u-1", 1))
	tests := []struct {
		name string
		args []string
		code int
		want []string // parts of stderr
	}{
		{"missing --config is a usage error", []string{"produce", "--brokers", f.brokers, "--source", "transactions", "--input", in},
			2, []string{"--config is required"}},
		{"missing --brokers is a usage error", []string{"produce", "--config", f.config, "--source", "transactions", "--input", in},
			2, []string{"--brokers is required"}},
		{"missing --source is a usage error", []string{"produce", "--brokers", f.brokers, "--config", f.config, "--input", in},
			2, []string{"--source is required"}},
		{"unknown flag is a usage error", append(f.produceArgs("transactions", in), "--partitions", "3"),
			2, []string{"flag provided but not defined: -partitions", "Usage: featurepipe produce"}},
		{"stray argument is a usage error", append(f.produceArgs("transactions", in), "extra"),
			2, []string{"unexpected arguments: extra"}},
		{"empty broker list is a usage error", []string{"produce", "--brokers", ",", "--config", f.config, "--source", "transactions", "--input", in},
			2, []string{"no brokers given"}},
		{"unknown source lists the sources", f.produceArgs("payments", in),
			1, []string{`unknown source "payments"`, "transactions", "logins"}},
		{"missing input file", f.produceArgs("transactions", filepath.Join(f.dir, "absent.jsonl")),
			1, []string{"open input", "absent.jsonl"}},
		{"missing feature file", []string{"produce", "--brokers", f.brokers, "--config", filepath.Join(f.dir, "absent.yaml"), "--source", "transactions", "--input", in},
			1, []string{"absent.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := execCLI(tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr)
				}
			}
		})
	}
	// None of the failed runs may have produced anything.
	cl, err := kafka.NewClient(kafka.Conn{Brokers: []string{f.brokers}}, "produce-cli-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// The topic may not even exist: EndOffsets would wait for it to appear.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ends, err := kafka.EndOffsets(ctx, cl, "transactions"); err == nil {
		for p, end := range ends {
			if end != 0 {
				t.Errorf("partition %d holds %d records after failed runs", p, end)
			}
		}
	}
}

func TestCommandLineExitCodes(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name+" --help exits 0 with its usage", func(t *testing.T) {
			code, stdout, stderr := execCLI(c.name, "--help")
			if code != 0 {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
			}
			if want := "Usage: featurepipe " + c.name; !strings.Contains(stdout+stderr, want) {
				t.Fatalf("output does not contain %q:\n%s%s", want, stdout, stderr)
			}
		})
	}
	t.Run("no arguments exits 2 with the usage", func(t *testing.T) {
		code, stdout, stderr := execCLI()
		if code != 2 {
			t.Fatalf("exit %d, want 2", code)
		}
		for _, c := range commands() {
			if !strings.Contains(stdout+stderr, "  "+c.name+" ") {
				t.Errorf("usage does not list %s:\n%s%s", c.name, stdout, stderr)
			}
		}
	})
	t.Run("help exits 0 with the usage", func(t *testing.T) {
		code, stdout, _ := execCLI("help")
		if code != 0 || !strings.Contains(stdout, "Usage: featurepipe <command>") {
			t.Fatalf("exit %d, stdout:\n%s", code, stdout)
		}
	})
	t.Run("unknown command exits 2", func(t *testing.T) {
		code, _, stderr := execCLI("prodcue", "--brokers", "x")
		if code != 2 || !strings.Contains(stderr, `unknown command "prodcue"`) || !strings.Contains(stderr, "Usage: featurepipe <command>") {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
	})
}

func sortedKeys(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
