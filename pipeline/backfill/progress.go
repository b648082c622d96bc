package backfill

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports records replayed out of total: a progress bar (count,
// rate, ETA) when w is a terminal, otherwise a plain line every interval.
// Safe for concurrent use; add is cheap (an atomic add, plus a bar update).
type progress struct {
	total int64
	done  atomic.Int64
	bar   *progressbar.ProgressBar // terminal only
	tw    io.Writer                // the terminal of bar
	mu    sync.Mutex
	w     io.Writer // plain lines; nil when off or when bar is set
	start time.Time
	last  time.Time
	every time.Duration
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newProgress returns a reporter writing to w (nil: silent).
func newProgress(w io.Writer, total int64, now time.Time) *progress {
	p := &progress{total: total, start: now, last: now, every: 2 * time.Second}
	switch {
	case w == nil:
	case isTerminal(w):
		p.tw = w
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("replaying"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionShowElapsedTimeOnFinish(),
		)
	default:
		p.w = w
	}
	return p
}

func (p *progress) add(n int) {
	done := p.done.Add(int64(n))
	if p.bar != nil {
		_ = p.bar.Add(n)
		return
	}
	if p.w == nil {
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	p.line(done, now)
}

func (p *progress) line(done int64, now time.Time) {
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(p.total-done)/rate) * time.Second).Round(time.Second).String()
	}
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(done) / float64(p.total)
	}
	fmt.Fprintf(p.w, "backfill: replayed %d/%d events (%.0f%%), %.0f events/s, ETA %s\n", done, p.total, pct, rate, eta)
}

// finish completes the bar or writes a last line.
func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.tw)
		return
	}
	if p.w != nil {
		p.mu.Lock()
		p.line(p.done.Load(), time.Now())
		p.mu.Unlock()
	}
}
