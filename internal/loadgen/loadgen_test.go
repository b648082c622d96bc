package loadgen

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// arrivals is a test server that records when each request arrived and
// which request number it carried.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
	ids   map[uint64]int
}

func (a *arrivals) record(r *http.Request) {
	id, _ := strconv.ParseUint(r.URL.Query().Get("i"), 10, 64)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.times = append(a.times, time.Now())
	if a.ids == nil {
		a.ids = map[uint64]int{}
	}
	a.ids[id]++
}

func get(url string) func(ctx context.Context, i uint64) (*http.Request, error) {
	return func(ctx context.Context, i uint64) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, "GET", url+"?i="+strconv.FormatUint(i, 10), nil)
	}
}

func TestRunPacesAtTheRate(t *testing.T) { bothClients(t, testRunPacesAtTheRate) }

func testRunPacesAtTheRate(t *testing.T, c client) {
	var a arrivals
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.record(r) }))
	defer srv.Close()
	// A modest rate, so that a loaded 2-core machine running other tests
	// (and the race detector) still keeps up: this checks pacing, not speed.
	const rate, dur, nslices = 500, time.Second, 5
	res, err := Run(context.Background(), c.with(Options{Rate: rate, Duration: dur, MaxInFlight: 16}, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	want := uint64(rate * dur.Seconds())
	if res.Due != want || res.Sent != want || res.OK != want || res.Errors != 0 || res.Missed != 0 {
		t.Fatalf("due %d sent %d ok %d errors %d missed %d, want %d sent and answered", res.Due, res.Sent, res.OK, res.Errors, res.Missed, want)
	}
	if len(a.ids) != int(want) {
		t.Errorf("server saw %d distinct requests, want %d (each request number once)", len(a.ids), want)
	}
	if res.Latency.Count() != want || res.Service.Count() != want {
		t.Errorf("latency/service samples %d/%d, want %d", res.Latency.Count(), res.Service.Count(), want)
	}
	// Open loop: the requests are spread over the run, not sent as fast as
	// possible. Every 200ms slice of the run gets about rate/5 of them.
	// Faster than the rate would be a pacing bug; slower is allowed down to
	// 0.75× because a loaded machine may stretch the last requests' answers
	// (seen: 449/s with load average 17).
	if got := res.AchievedRate(); got < 0.75*rate || got > 1.1*rate {
		t.Errorf("achieved rate %.0f/s, want %d/s (-25%%, +10%%)", got, rate)
	}
	first := a.times[0]
	slices := make([]int, nslices)
	for _, at := range a.times {
		if k := int(at.Sub(first) / (dur / nslices)); k < len(slices) {
			slices[k]++
		}
	}
	for k, n := range slices {
		if per := rate / nslices; n < per/2 || n > per*2 {
			t.Errorf("%v slice %d got %d requests, want about %d (all slices: %v)", dur/nslices, k, n, per, slices)
			break
		}
	}
}

func TestRunWarmupIsSentButNotCounted(t *testing.T) { bothClients(t, testRunWarmupIsSentButNotCounted) }

func testRunWarmupIsSentButNotCounted(t *testing.T, c client) {
	var a arrivals
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.record(r) }))
	defer srv.Close()
	res, err := Run(context.Background(), c.with(Options{Rate: 1000, Duration: 300 * time.Millisecond, Warmup: 200 * time.Millisecond}, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if res.WarmupSent != 200 || res.Sent != 300 || res.Due != 300 {
		t.Errorf("warm-up %d, measured %d of %d due; want 200 and 300 of 300", res.WarmupSent, res.Sent, res.Due)
	}
	if len(a.times) != 500 {
		t.Errorf("server saw %d requests, want 500", len(a.times))
	}
	if res.Latency.Count() != 300 {
		t.Errorf("%d latency samples, want the 300 measured", res.Latency.Count())
	}
}

// A server that stalls once for 200ms. With one request in flight, a
// closed-loop client would record one slow request; from the due time, every
// request due during the stall is slow, and the percentiles show it.
func TestRunLatencyCountsFromTheDueTime(t *testing.T) {
	bothClients(t, testRunLatencyCountsFromTheDueTime)
}

func testRunLatencyCountsFromTheDueTime(t *testing.T, c client) {
	var n atomic.Int64
	const stall = 200 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 100 {
			time.Sleep(stall)
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), c.with(Options{Rate: 1000, Duration: time.Second, MaxInFlight: 1}, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 1000 || res.Missed != 0 {
		t.Fatalf("ok %d missed %d, want 1000 and 0", res.OK, res.Missed)
	}
	// ~200 of 1000 requests were due during the stall: p90 is inside it.
	if p90 := res.Latency.Quantile(0.9); p90 < stall/4 {
		t.Errorf("latency p90 %v, want at least %v: requests due during the stall waited", p90, stall/4)
	}
	if res.Latency.Max() < stall || res.Service.Max() < stall {
		t.Errorf("latency max %v service max %v, want both >= %v", res.Latency.Max(), res.Service.Max(), stall)
	}
	// Service time does not see the queue: only one request was slow.
	if p90 := res.Service.Quantile(0.9); p90 > stall/4 {
		t.Errorf("service p90 %v, want well under %v: only one request was slow to serve", p90, stall)
	}
	if p90 := res.Lag.Quantile(0.9); p90 < stall/4 {
		t.Errorf("lag p90 %v, want at least %v: requests waited for the one in flight", p90, stall/4)
	}
}

func TestRunCountsErrors(t *testing.T) { bothClients(t, testRunCountsErrors) }

func testRunCountsErrors(t *testing.T, c client) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%10 == 0 {
			http.Error(w, "nope", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), c.with(Options{Rate: 1000, Duration: 200 * time.Millisecond}, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 20 || res.OK != 180 || res.ByStatus[503] != 20 || res.ByStatus[200] != 180 {
		t.Errorf("errors %d ok %d by status %v, want 20 errors (503) and 180 ok", res.Errors, res.OK, res.ByStatus)
	}
	if res.FirstError == "" {
		t.Error("FirstError is empty")
	}
	if res.Latency.Count() != 180 {
		t.Errorf("%d latency samples, want only the 180 answered 200", res.Latency.Count())
	}
}

func TestRunConnectionErrors(t *testing.T) { bothClients(t, testRunConnectionErrors) }

func testRunConnectionErrors(t *testing.T, c client) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	res, err := Run(context.Background(), c.with(Options{Rate: 500, Duration: 100 * time.Millisecond}, url))
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 50 || res.ByStatus[0] != 50 || res.OK != 0 {
		t.Errorf("errors %d by status %v, want 50 without a response", res.Errors, res.ByStatus)
	}
}

// With every slot taken by a server that never answers within the run,
// requests cannot be sent: they are Missed, not silently dropped or counted
// as sent.
func TestRunCountsMissedRequests(t *testing.T) { bothClients(t, testRunCountsMissedRequests) }

func testRunCountsMissedRequests(t *testing.T, c client) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	res, err := Run(context.Background(), c.with(Options{Rate: 1000, Duration: 100 * time.Millisecond, MaxInFlight: 2,
		Grace: 50 * time.Millisecond, Timeout: 300 * time.Millisecond}, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if res.Due != 100 || res.Missed != 98 || res.Sent != 2 || res.Errors != 2 {
		t.Errorf("due %d missed %d sent %d errors %d, want 100, 98 missed, 2 sent that timed out", res.Due, res.Missed, res.Sent, res.Errors)
	}
}

func TestRunStopsWhenCanceled(t *testing.T) { bothClients(t, testRunStopsWhenCanceled) }

func testRunStopsWhenCanceled(t *testing.T, c client) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	const rate, before = 1000, 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), before)
	defer cancel()
	t0 := time.Now()
	res, err := Run(ctx, c.with(Options{Rate: rate, Duration: 10 * time.Second}, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("Run took %v after its context ended at 200ms", took)
	}
	if res.Sent+res.Missed != res.Due || res.Missed < res.Due/2 || res.Errors != 0 {
		t.Errorf("sent %d + missed %d != due %d, or errors %d: a canceled run counts unsent requests as missed", res.Sent, res.Missed, res.Due, res.Errors)
	}
	// What was measured before the cancel is kept: about rate × 200ms
	// (less the 10ms head start), and none due after it.
	due := uint64(rate * before.Seconds())
	if res.Sent < due/4 || res.Sent > due {
		t.Errorf("sent %d before the cancel, want about %d (between %d and %d)", res.Sent, due-10, due/4, due)
	}
	if res.OK != res.Sent || res.Latency.Count() != res.Sent {
		t.Errorf("ok %d, %d latency samples, want the %d sent", res.OK, res.Latency.Count(), res.Sent)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	req := get("http://127.0.0.1:1")
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"rate must be positive", Options{Rate: 0, Duration: time.Second, Request: req}},
		{"duration must be positive", Options{Rate: 1, Request: req}},
		{"warm-up must not be negative", Options{Rate: 1, Duration: time.Second, Warmup: -1, Request: req}},
		{"request is required", Options{Rate: 1, Duration: time.Second}},
		{"in-flight bound must not be negative", Options{Rate: 1, Duration: time.Second, MaxInFlight: -1, Request: req}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tc.o); !errors.Is(err, ErrOptions) {
				t.Errorf("error %v, want ErrOptions", err)
			}
		})
	}
}

// client is one of Run's two ways of sending: net/http (Options.Request) or
// the raw keep-alive client (Options.Wire). Every Run rule holds for both.
type client struct {
	name string
	with func(o Options, url string) Options
}

func bothClients(t *testing.T, test func(*testing.T, client)) {
	for _, c := range []client{
		{"net/http", func(o Options, url string) Options { o.Request = get(url); return o }},
		{"wire", func(o Options, url string) Options {
			host := strings.TrimPrefix(url, "http://")
			o.Addr = host
			o.Wire = func(i uint64) []byte {
				return WireRequest("GET", host, "/?i="+strconv.FormatUint(i, 10), nil, nil)
			}
			return o
		}},
	} {
		t.Run(c.name, func(t *testing.T) { test(t, c) })
	}
}

// A slot waiting for a request due far ahead (here 1 request/s, 8 slots: the
// last is due in 8s) stops waiting when the context ends.
func TestRunCancelEndsLongWaits(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	res, err := Run(ctx, Options{Rate: 1, Duration: 8 * time.Second, MaxInFlight: 8, Request: func(ctx context.Context, i uint64) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Run returned %s after its context ended at 200ms", d)
	}
	if res.Sent+res.Missed != res.Due || res.Missed < 7 {
		t.Errorf("sent %d + missed %d, want %d due with at least 7 missed", res.Sent, res.Missed, res.Due)
	}
}
