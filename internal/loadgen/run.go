package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// sender sends requests for one slot (one goroutine, at most one request in
// flight). status is 0 when there was no response; sentAt is taken after
// the request was built, just before it was written.
type sender interface {
	send(ctx context.Context, i uint64) (status int, sentAt time.Time, err error)
	close()
}

// slot is one sending goroutine's private tallies, merged at the end.
type slot struct {
	latency, service, lag *Histogram
	sent, ok, errs, warm  uint64
	byStatus              map[int]uint64
	firstErr              string
	firstErrAt            time.Time
	lastDone              time.Time
}

// Run sends Rate × (Warmup + Duration) requests, request i due at
// start + i/Rate, through MaxInFlight slots, and returns what it measured.
// Each slot is a goroutine with at most one request in flight. A free slot
// claims the next request in due order, sleeps until its due time and sends
// it; when every slot is busy, due requests wait (in order) for the next
// free one. Latency counts from the due time either way.
//
// There is no central pacer: handing each request from a pacing goroutine
// to a sender costs a goroutine wake-up (often a futex call and a thread
// switch) per request, CPU the server being measured would otherwise have.
//
// It returns early, with what was measured so far and the unsent requests
// counted as Missed, when ctx ends. The error is non-nil only for invalid
// options.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	interval := float64(time.Second) / o.Rate
	warmN := uint64(o.Warmup.Seconds() * o.Rate)
	total := warmN + uint64(o.Duration.Seconds()*o.Rate)

	start := time.Now().Add(10 * time.Millisecond)
	measureFrom := start.Add(time.Duration(float64(warmN) * interval))
	// A request due in the run but still unclaimed at deadline (every slot
	// was busy until then) is never sent: it is Missed.
	deadline := start.Add(time.Duration(float64(total)*interval) + o.Grace)

	var next atomic.Uint64 // the next request to claim
	slots := make([]*slot, o.MaxInFlight)
	var wg sync.WaitGroup
	for k := range slots {
		s := &slot{latency: NewHistogram(), service: NewHistogram(), lag: NewHistogram(), byStatus: map[int]uint64{}}
		slots[k] = s
		var snd sender
		if o.Wire != nil {
			snd = newWireConn(&o)
		} else {
			snd = &httpSender{o: &o}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer snd.close()
			sl := newSleeper()
			defer sl.close()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				// Past the deadline or after cancellation no request is
				// sent any more: this one and every later one are Missed.
				if ctx.Err() != nil || time.Now().After(deadline) {
					return
				}
				due := start.Add(time.Duration(float64(i) * interval))
				sleepUntil(ctx, sl, due)
				if ctx.Err() != nil {
					return
				}
				s.do(ctx, snd, i, due, i >= warmN)
			}
		}()
	}
	wg.Wait()

	r := &Result{Due: total - warmN, ByStatus: map[int]uint64{},
		Latency: NewHistogram(), Service: NewHistogram(), Lag: NewHistogram()}
	var firstErrAt, lastDone time.Time
	for _, s := range slots {
		r.Latency.Merge(s.latency)
		r.Service.Merge(s.service)
		r.Lag.Merge(s.lag)
		r.Sent += s.sent
		r.OK += s.ok
		r.Errors += s.errs
		r.WarmupSent += s.warm
		for st, c := range s.byStatus {
			r.ByStatus[st] += c
		}
		if s.firstErr != "" && (firstErrAt.IsZero() || s.firstErrAt.Before(firstErrAt)) {
			r.FirstError, firstErrAt = s.firstErr, s.firstErrAt
		}
		if s.lastDone.After(lastDone) {
			lastDone = s.lastDone
		}
	}
	// Every measured request was either sent (and counted) or not.
	r.Missed = r.Due - r.Sent
	if r.Sent > 0 {
		r.Elapsed = lastDone.Sub(measureFrom)
	}
	return r, nil
}

// do sends request i and records it.
func (s *slot) do(ctx context.Context, snd sender, i uint64, due time.Time, measured bool) {
	status, sentAt, err := snd.send(ctx, i)
	done := time.Now()
	if err != nil && ctx.Err() != nil {
		// Cut short by the caller, not failed by the server: not counted
		// as sent, so Run counts it as Missed.
		return
	}
	if !measured {
		s.warm++
		return
	}
	s.sent++
	s.lastDone = done
	s.byStatus[status]++
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("HTTP %d", status)
	}
	if err != nil {
		s.errs++
		if s.firstErr == "" {
			s.firstErr, s.firstErrAt = fmt.Sprintf("request %d: %v", i, err), done
		}
		return
	}
	s.ok++
	s.latency.Record(done.Sub(due))
	s.service.Record(done.Sub(sentAt))
	s.lag.Record(sentAt.Sub(due))
}

// httpSender sends Options.Request through Options.Client (net/http).
type httpSender struct{ o *Options }

func (h *httpSender) close() {}

// send performs request i and reads its whole body (so the connection is
// reused).
func (h *httpSender) send(ctx context.Context, i uint64) (status int, sentAt time.Time, err error) {
	rctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
	defer cancel()
	req, err := h.o.Request(rctx, i)
	sentAt = time.Now()
	if err != nil {
		return 0, sentAt, fmt.Errorf("build request: %w", err)
	}
	resp, err := h.o.Client.Do(req)
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
