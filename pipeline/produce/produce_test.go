package produce_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/broker"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/schemas"
)

// demoConfig is the demo feature file: sources transactions and logins.
func demoConfig(t testing.TB) *config.File {
	t.Helper()
	cfg, err := config.LoadFS(schemas.Files, "demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startBroker starts a fresh embedded broker and a client to it, both closed
// at the end of the test, and creates the topics cfg names, as `featurepipe
// produce` does.
func startBroker(t testing.TB, cfg *config.File) *kgo.Client {
	t.Helper()
	b, err := broker.Start(broker.Options{Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cl, err := kafka.NewClient(kafka.Conn{Brokers: []string{b.Addr()}}, "produce-test", nil,
		kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := kafka.EnsureTopics(context.Background(), cl, cfg); err != nil {
		t.Fatal(err)
	}
	return cl
}

// consumeAll reads every record of topics from the start until want records
// arrived (failing after a timeout), then checks that no more are there.
func consumeAll(t testing.TB, cl *kgo.Client, want int, topics ...string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var total int64
	for _, topic := range topics {
		ends, err := kafka.EndOffsets(ctx, cl, topic)
		if err != nil {
			t.Fatal(err)
		}
		for _, end := range ends {
			total += end
		}
	}
	if want >= 0 && total != int64(want) {
		t.Fatalf("topics %v hold %d records, want %d", topics, total, want)
	}
	cons, err := kafka.NewClient(kafka.Conn{Brokers: cl.OptValue(kgo.SeedBrokers).([]string)}, "produce-test-consumer", nil,
		kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var recs []*kgo.Record
	for int64(len(recs)) < total {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the timeout", len(recs), total)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// line is one input line and what Send must make of it.
type line struct {
	text    string
	invalid string // part of the LineError message; "" for a valid line
	blank   bool   // skipped: neither sent nor invalid
}

// valid returns a valid transaction line.
func valid(user string, amount float64, ts int64) line {
	return line{text: fmt.Sprintf(`{"user_id":%q,"merchant_id":"m1","amount":%v,"currency":"EUR","ts":%d}`, user, amount, ts)}
}

func bad(text, msg string) line { return line{text: text, invalid: msg} }

// padTo pads a JSON object line with spaces before its closing brace to n bytes.
func padTo(l line, n int) line {
	l.text = l.text[:len(l.text)-1] + strings.Repeat(" ", n-len(l.text)) + "}"
	return l
}

func TestSend(t *testing.T) {
	cfg := demoConfig(t)
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	cl := startBroker(t, cfg)
	const ts = 1_700_000_000_000

	longLine := valid("u-long", 1, ts)
	longLine = padTo(longLine, produce.MaxLineBytes+1)
	longLine.invalid = fmt.Sprintf("longer than %d bytes", produce.MaxLineBytes)

	lines := []line{
		valid("u-1", 10.5, ts),
		bad(`{"user_id":"u-2","amount":1,`, "from JSON: EOF"),
		{blank: true},
		valid("u-2", 20, ts+1),
		bad(`{"user_id":"u-3","merchant_id":"m1","amount":"abc","currency":"EUR","ts":1}`, `field "amount": want double, got string "abc"`),
		bad(`{"user_id":"u-3","merchant_id":"m1","amount":1,"currency":"EUR","ts":1,"colour":"red"}`, `field "colour": not in schema featurepipe.demo.Transaction`),
		bad(`{"user_id":"u-3","merchant_id":"m1","amount":1,"ts":1}`, `field "currency": missing`),
		{text: " \t ", blank: true},
		bad(`[1,2,3]`, "want a JSON object, got array"),
		bad(`null`, "want a JSON object, got null"),
		bad(`{"user_id":"","merchant_id":"m1","amount":1,"currency":"EUR","ts":1}`, `entity key field "user_id" is empty`),
		bad(`{"user_id":"u-3","merchant_id":"m1","amount":1,"currency":"EUR","ts":1.5}`, `field "ts": want long, got non-integral number 1.5`),
		bad(`{"user_id":"u-3","merchant_id":"m1","amount":null,"currency":"EUR","ts":1}`, `field "amount": want double, got null`),
		bad(`{"user_id":"u-3","merchant_id":"m1","amount":1e400,"currency":"EUR","ts":1}`, `field "amount": want double, got number 1e400 (out of range)`),
		bad(`{"user_id":"u-3","user_id":"u-3","merchant_id":"m1","amount":1,"currency":"EUR","ts":1}`, `field "user_id": appears twice`),
		bad(`{"user_id":"u-3","merchant_id":"m1","amount":1,"currency":"EUR","ts":1} {}`, "data after the object"),
		longLine,
		padTo(valid("u-max", 5, ts+2), produce.MaxLineBytes), // exactly at the limit
		{text: valid("u-3", -3.25, ts+3).text + "\r"},        // CRLF line ending
		valid("u-4", 0, ts+4),                                // last line, no newline after it
	}
	var input strings.Builder
	for i, l := range lines {
		input.WriteString(l.text)
		if i < len(lines)-1 {
			input.WriteByte('\n')
		}
	}

	var progressCalls int
	st, lineErrs, err := produce.Send(context.Background(), cl, enc, strings.NewReader(input.String()), func(produce.Stats) { progressCalls++ })
	if err != nil {
		t.Fatalf("Send: %v", err)
	}

	wantSent := map[string]float64{} // key -> amount
	var wantLines, wantInvalid int
	for _, l := range lines {
		switch {
		case l.blank:
		case l.invalid != "":
			wantLines++
			wantInvalid++
		default:
			wantLines++
			native, err := enc.Source().Schema.FromJSON([]byte(l.text))
			if err != nil {
				t.Fatalf("test line %.60q is not valid: %v", l.text, err)
			}
			wantSent[native["user_id"].(string)] = native["amount"].(float64)
		}
	}

	t.Run("stats count non-blank lines, sent and invalid", func(t *testing.T) {
		want := produce.Stats{Lines: wantLines, Sent: len(wantSent), Invalid: wantInvalid}
		if st != want {
			t.Fatalf("stats = %+v, want %+v", st, want)
		}
		if st.Lines != st.Sent+st.Invalid {
			t.Fatalf("lines %d != sent %d + invalid %d", st.Lines, st.Sent, st.Invalid)
		}
		if progressCalls != 0 {
			t.Fatalf("progress called %d times for %d lines; want every 10,000", progressCalls, st.Lines)
		}
	})

	t.Run("each invalid line is reported with its line number and a message naming the problem", func(t *testing.T) {
		got := map[int]string{}
		for _, le := range lineErrs {
			if _, dup := got[le.Line]; dup {
				t.Errorf("line %d reported twice", le.Line)
			}
			got[le.Line] = le.Error()
		}
		for i, l := range lines {
			n := i + 1
			msg, reported := got[n]
			delete(got, n)
			switch {
			case l.invalid == "" && reported:
				t.Errorf("valid line %d reported: %s", n, msg)
			case l.invalid != "" && !reported:
				t.Errorf("invalid line %d (%.60q) not reported", n, l.text)
			case l.invalid != "" && !strings.Contains(msg, l.invalid):
				t.Errorf("line %d: message %q does not contain %q", n, msg, l.invalid)
			case l.invalid != "" && !strings.HasPrefix(msg, fmt.Sprintf("line %d: ", n)):
				t.Errorf("line %d: message %q does not start with its line number", n, msg)
			}
		}
		for n, msg := range got {
			t.Errorf("line %d does not exist but was reported: %s", n, msg)
		}
		if !sort.SliceIsSorted(lineErrs, func(i, j int) bool { return lineErrs[i].Line < lineErrs[j].Line }) {
			t.Error("line errors are not in line order")
		}
	})

	t.Run("every valid line was produced, keyed by its entity key, decodable", func(t *testing.T) {
		recs := consumeAll(t, cl, len(wantSent), enc.Source().Topic)
		reg := schemas.NewSet(enc.Source().Schema)
		got := map[string]float64{}
		for _, r := range recs {
			_, rec, err := reg.Decode(r.Value)
			if err != nil {
				t.Fatalf("record %s: %v", r.Key, err)
			}
			user, err := schemas.String(rec, "user_id")
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != user {
				t.Errorf("record key %q, want the entity key %q", r.Key, user)
			}
			amount, err := schemas.Float(rec, "amount")
			if err != nil {
				t.Fatal(err)
			}
			if _, dup := got[user]; dup {
				t.Errorf("%s produced twice", user)
			}
			got[user] = amount
		}
		if fmt.Sprint(got) != fmt.Sprint(wantSent) {
			t.Fatalf("produced %v, want %v", got, wantSent)
		}
	})
}

func TestSendProgress(t *testing.T) {
	cfg := demoConfig(t)
	enc, err := produce.NewEncoder(cfg, "logins")
	if err != nil {
		t.Fatal(err)
	}
	cl := startBroker(t, cfg)
	const n = 20_005
	var input strings.Builder
	wantInvalid := 0
	for i := 1; i <= n; i++ {
		if i%10_000 == 0 { // the lines at which progress is due are invalid
			input.WriteString("{}\n")
			wantInvalid++
			continue
		}
		fmt.Fprintf(&input, `{"user_id":"u%d","country":"DE","success":true,"ts":%d}`+"\n", i%50, 1_700_000_000_000+i)
	}
	var calls []produce.Stats
	st, lineErrs, err := produce.Send(context.Background(), cl, enc, strings.NewReader(input.String()), func(s produce.Stats) { calls = append(calls, s) })
	if err != nil {
		t.Fatal(err)
	}
	if st != (produce.Stats{Lines: n, Sent: n - wantInvalid, Invalid: wantInvalid}) || len(lineErrs) != wantInvalid {
		t.Fatalf("stats %+v with %d line errors", st, len(lineErrs))
	}
	var lines []int
	for _, c := range calls {
		lines = append(lines, c.Lines)
		if c.Sent+c.Invalid > c.Lines {
			t.Errorf("progress %+v: more sent and invalid than read", c)
		}
	}
	if want := []int{10_000, 20_000}; !slices.Equal(lines, want) {
		t.Fatalf("progress called at lines %v, want %v (also when that line is invalid)", lines, want)
	}
	if calls[1].Invalid != 2 {
		t.Errorf("progress at 20,000 reports %d invalid, want 2", calls[1].Invalid)
	}
}

func TestSendReadError(t *testing.T) {
	cfg := demoConfig(t)
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	cl := startBroker(t, cfg)
	in := io.MultiReader(strings.NewReader(valid("u-1", 1, 1).text+"\n"+valid("u-2", 2, 2).text+"\n"),
		iotest.ErrReader(errors.New("disk on fire")))
	st, lineErrs, err := produce.Send(context.Background(), cl, enc, in, nil)
	if err == nil || !strings.Contains(err.Error(), "read input: disk on fire") {
		t.Fatalf("err = %v, want the read error", err)
	}
	if st != (produce.Stats{Lines: 2, Sent: 2}) || len(lineErrs) != 0 {
		t.Fatalf("stats %+v, %d line errors; want the lines before the error sent", st, len(lineErrs))
	}
	consumeAll(t, cl, 2, enc.Source().Topic)
}

func TestNewEncoder(t *testing.T) {
	cfg := demoConfig(t)
	t.Run("unknown source lists the sources", func(t *testing.T) {
		_, err := produce.NewEncoder(cfg, "payments")
		if err == nil {
			t.Fatal("no error")
		}
		for _, want := range []string{`unknown source "payments"`, "transactions", "logins"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
	})
	t.Run("encoder writes its source's topic", func(t *testing.T) {
		for _, name := range []string{"transactions", "logins"} {
			enc, err := produce.NewEncoder(cfg, name)
			if err != nil {
				t.Fatal(err)
			}
			if enc.Source().Name != name {
				t.Errorf("source %q, want %q", enc.Source().Name, name)
			}
		}
	})
	t.Run("source feeding no feature has no key to partition by", func(t *testing.T) {
		text := `
entities: [{name: user, key: user_id}]
sources:
  - {name: transactions, topic: transactions, schema: transaction.avsc, event_time: ts}
  - {name: logins, topic: logins, schema: login.avsc, event_time: ts}
features:
  - {name: txn_count, version: 1, entity: user, source: transactions, aggregation: count, window: 1d, owner: t, description: d}
`
		cfg, err := config.Parse("test.yaml", []byte(text), schemas.Files, ".")
		if err != nil {
			t.Fatal(err)
		}
		_, err = produce.NewEncoder(cfg, "logins")
		if err == nil || !strings.Contains(err.Error(), `source "logins" feeds no feature`) {
			t.Fatalf("err = %v, want source feeds no feature", err)
		}
	})
}

func TestRecord(t *testing.T) {
	cfg := demoConfig(t)
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	base := func() map[string]any {
		return map[string]any{"user_id": "u-1", "merchant_id": "m1", "amount": 1.5, "currency": "EUR", "ts": int64(1_700_000_000_000)}
	}
	tests := []struct {
		name   string
		change func(map[string]any)
		want   string // part of the error; "" for success
	}{
		{"valid record", func(map[string]any) {}, ""},
		{"entity key at the key limit", func(m map[string]any) { m["user_id"] = strings.Repeat("k", events.DefaultMaxKeyBytes) }, ""},
		{"event time 23h from now", func(m map[string]any) { m["ts"] = time.Now().Add(23 * time.Hour).UnixMilli() }, ""},
		{"event time as time.Time", func(m map[string]any) { m["ts"] = time.UnixMilli(1_700_000_000_000) }, ""},
		{"missing entity key", func(m map[string]any) { delete(m, "user_id") }, `entity key: field "user_id": missing`},
		{"empty entity key", func(m map[string]any) { m["user_id"] = "" }, `entity key field "user_id" is empty`},
		{"entity key of the wrong type", func(m map[string]any) { m["user_id"] = true }, `entity key: field "user_id": want string, got boolean`},
		{"missing event time", func(m map[string]any) { delete(m, "ts") }, `event time: field "ts": missing`},
		{"event time of the wrong type", func(m map[string]any) { m["ts"] = 1.5 }, `event time: field "ts": want integer, got double`},
		{"value the schema refuses", func(m map[string]any) { m["amount"] = "x" }, "encode featurepipe.demo.Transaction"},
		// What the schema accepts but every worker dead-letters: refused
		// with the workers' reason code (package events).
		{"event time before 1970", func(m map[string]any) { m["ts"] = int64(-1) }, events.ReasonTooOld + ": event time -1 is before 1970"},
		{"event time 25h from now (beyond MaxFuture)", func(m map[string]any) { m["ts"] = time.Now().Add(25 * time.Hour).UnixMilli() }, events.ReasonFuture + ": "},
		{"event time in microseconds", func(m map[string]any) { m["ts"] = time.Now().UnixMicro() }, events.ReasonFuture + ": "},
		{"entity key over the key limit", func(m map[string]any) { m["user_id"] = strings.Repeat("k", events.DefaultMaxKeyBytes+1) }, events.ReasonKeyTooLarge + ": "},
		{"non-finite value", func(m map[string]any) { m["amount"] = math.Inf(1) }, events.ReasonNonFinite + ": "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			native := base()
			tt.change(native)
			r, err := enc.Record(native)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantKey, _ := schemas.String(native, "user_id") // u-1 unless the row changed it
			wantTS, _ := schemas.Int(native, "ts")          // 1_700_000_000_000 unless the row changed it
			if r.Topic != "transactions" || string(r.Key) != wantKey {
				t.Fatalf("record topic %q key %.20q, want transactions %.20q", r.Topic, r.Key, wantKey)
			}
			_, rec, err := schemas.NewSet(enc.Source().Schema).Decode(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if ts, _ := schemas.Int(rec, "ts"); ts != wantTS {
				t.Fatalf("decoded ts %d, want %d", ts, wantTS)
			}
		})
	}
}

func TestDemoRun(t *testing.T) {
	cfg := demoConfig(t)
	cl := startBroker(t, cfg)
	demo := produce.Demo{Users: 5, Rate: 200, History: 48 * time.Hour}
	historyEvents := int(demo.History/(6*time.Hour)) * demo.Users
	streamBatch := demo.Rate / 10 // one batch per 100ms tick
	// Stop after two streamed batches; the timeout only bounds a broken Run.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	var totals []int
	err := demo.Run(ctx, cl, cfg, func(total int) {
		totals = append(totals, total)
		if total >= historyEvents+2*streamBatch {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	end := time.Now()
	want := []int{historyEvents, historyEvents + streamBatch, historyEvents + 2*streamBatch}
	if !slices.Equal(totals, want) {
		t.Fatalf("onSent totals %v, want %v: the history in one batch, then Rate/10 per tick until cancelled", totals, want)
	}
	last := totals[len(totals)-1]

	recs := consumeAll(t, cl, -1, "transactions", "logins")
	if len(recs) < last {
		t.Fatalf("consumed %d records, but %d were reported sent", len(recs), last)
	}
	reg := schemas.NewSet()
	for _, s := range cfg.Sources {
		reg.Add(s.Schema)
	}
	perTopic := map[string]int{}
	users := map[string]bool{}
	for _, r := range recs {
		s, rec, err := reg.Decode(r.Value)
		if err != nil {
			t.Fatalf("%s record: %v", r.Topic, err)
		}
		src, _ := cfg.SourceByTopic(r.Topic)
		if s != src.Schema {
			t.Fatalf("%s record written with schema %s, want %s", r.Topic, s.Name, src.Schema.Name)
		}
		user, err := schemas.String(rec, "user_id")
		if err != nil || string(r.Key) != user {
			t.Fatalf("%s record key %q, user_id %q (%v)", r.Topic, r.Key, user, err)
		}
		ts, err := schemas.Int(rec, "ts")
		if err != nil {
			t.Fatal(err)
		}
		if ts < start.Add(-demo.History).UnixMilli() || ts > end.UnixMilli() {
			t.Errorf("event time %s outside the last %s", time.UnixMilli(ts), demo.History)
		}
		if r.Topic == "transactions" {
			if amount, err := schemas.Float(rec, "amount"); err != nil || amount < 0 {
				t.Errorf("amount %v (%v), want a non-negative number", amount, err)
			}
		}
		perTopic[r.Topic]++
		users[user] = true
	}
	if perTopic["transactions"] == 0 || perTopic["logins"] == 0 {
		t.Fatalf("records per topic %v, want both sources", perTopic)
	}
	if len(users) > demo.Users {
		t.Fatalf("%d distinct users, want at most %d", len(users), demo.Users)
	}
}

func TestDemoRunCancelledDuringHistoryReturnsNil(t *testing.T) {
	cfg := demoConfig(t)
	cl := startBroker(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // ends Run in its first (history) send
	sent := 0
	err := produce.Demo{Users: 5, Rate: 10, History: 24 * time.Hour}.Run(ctx, cl, cfg, func(total int) { sent = total })
	if err != nil {
		t.Fatalf("Run = %v, want nil: cancel is how Run is stopped, in any phase", err)
	}
	if sent != 0 {
		t.Fatalf("onSent reported %d events sent under a cancelled context", sent)
	}
}

// Send encodes lines on several goroutines, in chunks: records still reach
// each partition in input order, and the invalid lines scattered over many
// chunks are reported with their own line numbers, in order.
func TestSendKeepsInputOrderAcrossChunks(t *testing.T) {
	cfg := demoConfig(t)
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	cl := startBroker(t, cfg)
	const n = 5000 // ~20 chunks
	var input strings.Builder
	var wantBad []int
	wantSent := 0
	for i := 1; i <= n; i++ {
		switch {
		case i%997 == 0:
			input.WriteString("{\"user_id\":\n")
			wantBad = append(wantBad, i)
		case i%101 == 0:
			input.WriteString("\n") // blank: skipped, but it has a line number
		default:
			wantSent++
			fmt.Fprintf(&input, "%s\n", valid(fmt.Sprintf("u-%d", i%7), float64(i), 1_700_000_000_000).text)
		}
	}
	st, lineErrs, err := produce.Send(context.Background(), cl, enc, strings.NewReader(input.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	var gotBad []int
	for _, le := range lineErrs {
		gotBad = append(gotBad, le.Line)
	}
	if !slices.Equal(gotBad, wantBad) {
		t.Fatalf("invalid lines reported %v, want %v", gotBad, wantBad)
	}
	recs := consumeAll(t, cl, st.Sent, enc.Source().Topic)
	reg := schemas.NewSet(enc.Source().Schema)
	last := map[string]float64{} // per user: the amount (its line number) of its last record
	for _, r := range recs {     // in offset order within each partition
		_, rec, err := reg.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		amount, _ := schemas.Float(rec, "amount")
		if prev, ok := last[string(r.Key)]; ok && amount <= prev {
			t.Fatalf("%s: line %v produced after line %v", r.Key, amount, prev)
		}
		last[string(r.Key)] = amount
	}
	if st.Sent != wantSent || len(recs) != wantSent {
		t.Fatalf("%d sent and %d records, want %d", st.Sent, len(recs), wantSent)
	}
}

// checkFastPathMatches fails t unless enc.FromJSON(line) gives what the
// map path, Record(Schema.FromJSON(line)), gives: the same key and value
// bytes, or the same error. It reports whether the direct path took line.
func checkFastPathMatches(t *testing.T, enc *produce.Encoder, line string) bool {
	t.Helper()
	now := time.Now().UnixMilli() // one clock for both paths: their errors name it
	got, gotErr := produce.FromJSONAt(enc, []byte(line), now)
	var want *kgo.Record
	native, wantErr := enc.Source().Schema.FromJSON([]byte(line))
	if wantErr == nil {
		want, wantErr = produce.RecordAt(enc, native, now)
	}
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("FromJSON(%s): error %v; the map path: %v", line, gotErr, wantErr)
	}
	if gotErr == nil && (string(got.Key) != string(want.Key) || !bytes.Equal(got.Value, want.Value) || got.Topic != want.Topic) {
		t.Fatalf("FromJSON(%s) = %s %q %x; the map path: %s %q %x", line, got.Topic, got.Key, got.Value, want.Topic, want.Key, want.Value)
	}
	_, took, _ := produce.FromFlatJSON(enc, []byte(line))
	return took
}

// The direct JSON-to-Avro path gives the records and errors of the map
// path, and takes the plain lines.
func TestFromJSONDirectPathMatchesTheMapPath(t *testing.T) {
	enc, err := produce.NewEncoder(demoConfig(t), "transactions")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	line := func(key, amount, ts string) string {
		return `{"user_id":` + key + `,"merchant_id":"m1","amount":` + amount + `,"currency":"EUR","ts":` + ts + `}`
	}
	plain := []string{
		line(`"u-1"`, `12.5`, "1767225600000"),
		line(`"ü-ñ"`, `-0.0`, strconv.FormatInt(now, 10)),
		line(`"u-2"`, `1e3`, "1.7e12"),
		` {"ts":1767225600000, "currency":"EUR","amount":3,"merchant_id":"m","user_id":"k"} `,
	}
	for _, l := range plain {
		if !checkFastPathMatches(t, enc, l) {
			t.Fatalf("the direct path declined the plain line %s", l)
		}
	}
	for _, l := range []string{
		line(`"u\u002d1"`, `12.5`, "1767225600000"), // escapes: the map path
		line(`""`, `12.5`, "1767225600000"),         // empty key: dead-lettered by workers
		line(`"`+strings.Repeat("k", events.DefaultMaxKeyBytes+1)+`"`, `1`, "1767225600000"),
		line(`"u-1"`, `"x"`, "1767225600000"),
		line(`"u-1"`, `1e400`, "1767225600000"),
		line(`"u-1"`, `1`, "-1"),
		line(`"u-1"`, `1`, strconv.FormatInt(time.Now().Add(25*time.Hour).UnixMilli(), 10)),
		line(`"u-1"`, `1`, "1.5"),
		line(`7`, `1`, "1767225600000"),
		`{"user_id":"u-1","merchant_id":"m1","amount":1,"currency":"EUR"}`,
		`{"user_id":"u-1","merchant_id":"m1","amount":1,"currency":"EUR","ts":1767225600000,"extra":1}`,
		`{"user_id":"u-1","merchant_id":"m1","amount":1,"currency":"EUR","ts":1767225600000,"user_id":"u-2"}`,
		`{"user_id":"u-1","merchant_id":"m1","amount":01,"currency":"EUR","ts":1767225600000}`,
		`{"user_id":"u-1","merchant_id":"m1","amount":1,"currency":"EUR","ts":1767225600000}x`,
		`{"user_id":"u-1",}`,
		`[]`,
	} {
		checkFastPathMatches(t, enc, l)
	}
}
