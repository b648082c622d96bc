// Package loadgen is an open-loop, constant-rate HTTP load generator: the
// engine of `featurepipe load`.
//
// Open loop means request i is due at start + i/Rate whatever happened to the
// requests before it, and its latency is measured from that due time, not
// from when it was actually sent. A closed-loop client (send, wait, send)
// stops sending while the server stalls and so never records the requests a
// real client population would have sent meanwhile; this "coordinated
// omission" hides stalls from the percentiles. Here a stall of 100 ms at
// 20,000 requests/s shows up as ~2,000 slow requests, as it would for users.
//
// Service time (from send to response read) is reported too: the gap between
// the two is time a request spent waiting to be sent, in the generator
// (pacing lag, in-flight limit) rather than in the server.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Options configure Run. Rate, Duration and Request are required.
type Options struct {
	// Rate is the request rate, per second. Request i is due at
	// start + i/Rate. Required, > 0.
	Rate float64
	// Duration is the measured period, after Warmup. Required, > 0.
	Duration time.Duration
	// Warmup runs at Rate before the measured period (opening connections,
	// filling caches, growing the heap); its requests are sent but not
	// counted. Default 0.
	Warmup time.Duration
	// MaxInFlight bounds the requests outstanding at once; it is also the
	// number of sending goroutines and of keep-alive connections. When every
	// slot is busy, due requests wait for one, and that wait counts in their
	// latency. Default 64.
	MaxInFlight int
	// Grace is how long after the end of the run a backlogged request (one
	// due in the run but not yet sent, because MaxInFlight requests were
	// outstanding) may still be sent. Requests still unsent then are
	// counted as Missed. Default 1s.
	Grace time.Duration
	// Timeout bounds one request, from send to response read. A request
	// that times out is an error. Default 5s.
	Timeout time.Duration
	// Client sends the requests. Default: NewClient(MaxInFlight).
	Client *http.Client
	// Request builds request i (0, 1, 2, ...) with ctx. It is called by
	// MaxInFlight goroutines at once and must be safe for that; the time it
	// takes counts in latency but not in service time.
	Request func(ctx context.Context, i uint64) (*http.Request, error)
}

// Result is what Run measured. Counts and histograms cover the measured
// period only (requests due after Warmup).
type Result struct {
	// Due is the number of requests due in the measured period:
	// Rate × Duration.
	Due uint64
	// Sent requests got a response or failed; OK ones answered 200.
	Sent, OK uint64
	// Errors are requests that failed or answered anything but 200.
	Errors uint64
	// Missed requests were due but never sent (see Options.Grace), or were
	// not sent because ctx ended.
	Missed uint64
	// ByStatus counts responses by HTTP status; status 0 counts requests
	// that got no response (connection errors, timeouts).
	ByStatus map[int]uint64
	// FirstError describes the first failure, "" if none.
	FirstError string
	// WarmupSent counts the warm-up requests (not in any other field).
	WarmupSent uint64
	// Elapsed is the wall time from the first to the last measured request
	// completing, the denominator of AchievedRate.
	Elapsed time.Duration
	// Latency of the 200 responses, from the time each request was due to
	// its response body read: what a client population at Rate sees.
	Latency *Histogram
	// Service time of the 200 responses, from send to response body read.
	Service *Histogram
	// Lag is how late requests were sent after their due time: the
	// generator's own delay (timer granularity, CPU, in-flight limit).
	Lag *Histogram
}

// AchievedRate is the rate at which measured requests completed.
func (r *Result) AchievedRate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

// ErrOptions is wrapped by the errors of invalid Options.
var ErrOptions = errors.New("loadgen: invalid options")

func (o *Options) validate() error {
	switch {
	case !(o.Rate > 0):
		return fmt.Errorf("%w: Rate %v must be positive", ErrOptions, o.Rate)
	case o.Duration <= 0:
		return fmt.Errorf("%w: Duration %v must be positive", ErrOptions, o.Duration)
	case o.Warmup < 0:
		return fmt.Errorf("%w: Warmup %v is negative", ErrOptions, o.Warmup)
	case o.Request == nil:
		return fmt.Errorf("%w: Request is required", ErrOptions)
	case o.MaxInFlight < 0:
		return fmt.Errorf("%w: MaxInFlight %d is negative", ErrOptions, o.MaxInFlight)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 64
	}
	if o.Grace <= 0 {
		o.Grace = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = NewClient(o.MaxInFlight)
	}
	return nil
}

// NewClient returns an HTTP/1.1 client tuned for load: keep-alive on, up to
// conns idle connections kept per host (so connections are reused, not
// re-dialed, under load), no proxy, no compression.
func NewClient(conns int) *http.Client {
	conns = max(conns, 1)
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * conns,
		MaxIdleConnsPerHost: 2 * conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}}
}

type job struct {
	i        uint64
	due      time.Time
	measured bool
}

// worker is one sending goroutine's private tallies, merged at the end.
type worker struct {
	latency, service, lag *Histogram
	sent, ok, errs        uint64
	warm, canceled        uint64
	byStatus              map[int]uint64
	firstErr              string
	firstErrAt            time.Time
	lastDone              time.Time
}

// Run sends Rate × (Warmup + Duration) requests, request i due at
// start + i/Rate, through MaxInFlight goroutines, and returns what it
// measured. It returns early, with what was measured so far and the
// unsent requests counted as Missed, when ctx ends. The error is non-nil
// only for invalid options.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	interval := float64(time.Second) / o.Rate
	warmN := uint64(o.Warmup.Seconds() * o.Rate)
	total := warmN + uint64(o.Duration.Seconds()*o.Rate)

	jobs := make(chan job)
	workers := make([]*worker, o.MaxInFlight)
	var wg sync.WaitGroup
	for k := range workers {
		w := &worker{latency: NewHistogram(), service: NewHistogram(), lag: NewHistogram(), byStatus: map[int]uint64{}}
		workers[k] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				w.do(ctx, &o, j)
			}
		}()
	}

	start := time.Now().Add(10 * time.Millisecond)
	measureFrom := start.Add(time.Duration(float64(warmN) * interval))
	deadline := start.Add(time.Duration(float64(total)*interval) + o.Grace)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var missed uint64
	i := uint64(0)
dispatch:
	for ; i < total; i++ {
		due := start.Add(time.Duration(float64(i) * interval))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case jobs <- job{i: i, due: due, measured: i >= warmN}:
		case <-timer.C:
			break dispatch
		case <-ctx.Done():
			break dispatch
		}
	}
	if i < total {
		missed = total - max(i, warmN)
	}
	close(jobs)
	wg.Wait()

	r := &Result{Due: total - warmN, Missed: missed, ByStatus: map[int]uint64{},
		Latency: NewHistogram(), Service: NewHistogram(), Lag: NewHistogram()}
	var firstErrAt, lastDone time.Time
	for _, w := range workers {
		r.Latency.Merge(w.latency)
		r.Service.Merge(w.service)
		r.Lag.Merge(w.lag)
		r.Sent += w.sent
		r.OK += w.ok
		r.Errors += w.errs
		r.WarmupSent += w.warm
		r.Missed += w.canceled
		for s, c := range w.byStatus {
			r.ByStatus[s] += c
		}
		if w.firstErr != "" && (firstErrAt.IsZero() || w.firstErrAt.Before(firstErrAt)) {
			r.FirstError, firstErrAt = w.firstErr, w.firstErrAt
		}
		if w.lastDone.After(lastDone) {
			lastDone = w.lastDone
		}
	}
	if r.Sent > 0 {
		r.Elapsed = lastDone.Sub(measureFrom)
	}
	return r, nil
}

// do sends one request and records it.
func (w *worker) do(ctx context.Context, o *Options, j job) {
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	status, sentAt, err := send(rctx, o, j.i)
	done := time.Now()
	if err != nil && ctx.Err() != nil {
		// Cut short by the caller, not failed by the server: unsent.
		if j.measured {
			w.canceled++
		}
		return
	}
	if !j.measured {
		w.warm++
		return
	}
	w.sent++
	w.lastDone = done
	w.byStatus[status]++
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("HTTP %d", status)
	}
	if err != nil {
		w.errs++
		if w.firstErr == "" {
			w.firstErr, w.firstErrAt = fmt.Sprintf("request %d: %v", j.i, err), done
		}
		return
	}
	w.ok++
	w.latency.Record(done.Sub(j.due))
	w.service.Record(done.Sub(sentAt))
	w.lag.Record(sentAt.Sub(j.due))
}

// send performs request i and reads its whole body (so the connection is
// reused). status is 0 when there was no response.
func send(ctx context.Context, o *Options, i uint64) (status int, sentAt time.Time, err error) {
	req, err := o.Request(ctx, i)
	sentAt = time.Now()
	if err != nil {
		return 0, sentAt, fmt.Errorf("build request: %w", err)
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return 0, sentAt, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return resp.StatusCode, sentAt, fmt.Errorf("read response: %w", err)
	}
	return resp.StatusCode, sentAt, nil
}
