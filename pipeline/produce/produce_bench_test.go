package produce_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/broker"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

// benchLines returns n valid transaction lines of the demo source, 10,000
// users, event times within the last 30 days.
func benchLines(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now().UnixMilli()
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"user_id":"u%05d","merchant_id":"m%03d","amount":%.2f,"currency":"EUR","ts":%d}`+"\n",
			i%10000, rng.IntN(500), float64(rng.IntN(100000))/100, now-rng.Int64N(30*24*3600*1000))
	}
	return b.Bytes()
}

// BenchmarkProduce measures `featurepipe produce` of JSON lines (the demo
// transactions source, PRODUCE_EVENTS lines per iteration, default 300,000)
// into the embedded broker in this process, with the client options of the
// command (produce.ClientOpts):
//
//   - send: produce.Send of the JSON lines, as the command runs it;
//   - bare: a bare franz-go producer of the same records, encoded before
//     the timer starts (Produce with a callback counting errors, one Flush):
//     the reference, what the client and broker alone cost.
//
// Both report events/s and cpu-µs/event, the CPU time (user and system) of
// the whole process per event, broker included: on a shared machine the
// CPU time varies less than the wall time. Run with `make bench-produce`.
func BenchmarkProduce(b *testing.B) {
	n := 300_000
	if s := os.Getenv("PRODUCE_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("PRODUCE_EVENTS=%q: want a positive integer", s)
		}
		n = v
	}
	cfg := demoConfig(b)
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		b.Fatal(err)
	}
	input := benchLines(n)
	newClient := func(b *testing.B) *kgo.Client {
		br, err := broker.Start(broker.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(br.Close)
		cl, err := kafka.NewClient(kafka.Conn{Brokers: []string{br.Addr()}}, "produce-bench", nil, produce.ClientOpts(enc)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cl.Close)
		if err := kafka.EnsureTopics(context.Background(), cl, cfg); err != nil {
			b.Fatal(err)
		}
		return cl
	}
	b.Run("send", func(b *testing.B) {
		cl := newClient(b)
		b.SetBytes(int64(len(input)))
		b.ResetTimer()
		cpu0 := cpuTime(b)
		for range b.N {
			st, bad, err := produce.Send(context.Background(), cl, enc, bytes.NewReader(input), nil)
			if err != nil || len(bad) > 0 || st.Sent != n {
				b.Fatalf("sent %d of %d: %v (first bad line: %v)", st.Sent, n, err, bad)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(n*b.N), "cpu-µs/event")
	})
	b.Run("bare", func(b *testing.B) {
		cl := newClient(b)
		recs := make([]*kgo.Record, 0, n)
		for line := range bytes.Lines(input) {
			r, err := enc.FromJSON(bytes.TrimSuffix(line, []byte{'\n'}))
			if err != nil {
				b.Fatal(err)
			}
			recs = append(recs, r)
		}
		b.SetBytes(int64(len(input)))
		b.ResetTimer()
		cpu0 := cpuTime(b)
		for range b.N {
			ctx := context.Background()
			var mu sync.Mutex
			var failed error
			for _, r := range recs {
				r := &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value}
				cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
					if err != nil {
						mu.Lock()
						failed = err
						mu.Unlock()
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			if mu.Lock(); failed != nil {
				b.Fatal(failed)
			}
			mu.Unlock()
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(n*b.N), "cpu-µs/event")
	})
}

// cpuTime is the CPU time (user and system) the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
