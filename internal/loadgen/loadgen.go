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
	"net"
	"net/http"
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
	// number of sending goroutines and of keep-alive connections. A free
	// slot takes the next request in due order and sends it at its due
	// time; when every slot is busy, due requests queue (in order) for the
	// next free one, and that wait counts in their latency. Default 64.
	MaxInFlight int
	// Grace is how long after the end of the run a backlogged request (one
	// due in the run but not yet sent, because MaxInFlight requests were
	// outstanding) may still be sent. Requests still unsent then are
	// counted as Missed. Default 1s.
	Grace time.Duration
	// Timeout bounds one request, from send to response read. A request
	// that times out is an error. Default 5s.
	Timeout time.Duration
	// Client sends the requests built by Request. Default:
	// NewClient(MaxInFlight). Unused with Wire.
	Client *http.Client
	// Request builds request i (0, 1, 2, ...) with ctx, sent through Client
	// (net/http). It is called by MaxInFlight goroutines at once and must be
	// safe for that; the time it takes counts in latency but not in service
	// time. Exactly one of Request and Wire is required.
	Request func(ctx context.Context, i uint64) (*http.Request, error)
	// Wire returns request i as the bytes of a complete HTTP/1.1 request
	// (see WireRequest), sent as is over one of MaxInFlight keep-alive TCP
	// connections to Addr, one request in flight per connection (no
	// pipelining). The response is parsed minimally: status line,
	// Content-Length or chunked framing, Connection: close; the body is
	// read and discarded. This costs a fraction of net/http's client CPU
	// (no per-request allocation), which matters when the generator shares
	// the CPUs with the server it measures. The returned bytes must not be
	// modified while Run is running; pre-build them once per key.
	Wire func(i uint64) []byte
	// Addr is the host:port Wire requests are sent to. Required with Wire.
	Addr string
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
	// not sent (or were cut short) because ctx ended: Due − Sent.
	Missed uint64
	// ByStatus counts responses by HTTP status; status 0 counts requests
	// that got no response (connection errors, timeouts).
	ByStatus map[int]uint64
	// FirstError describes the first failure, "" if none.
	FirstError string
	// WarmupSent counts the warm-up requests (not in any other field).
	WarmupSent uint64
	// Elapsed is the wall time from the due time of the first measured
	// request to the completion of the last one, the denominator of
	// AchievedRate. 0 when nothing was sent.
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
	case (o.Request == nil) == (o.Wire == nil):
		return fmt.Errorf("%w: exactly one of Request and Wire is required", ErrOptions)
	case o.Wire != nil && o.Addr == "":
		return fmt.Errorf("%w: Addr is required with Wire", ErrOptions)
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
	if o.Client == nil && o.Request != nil {
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
