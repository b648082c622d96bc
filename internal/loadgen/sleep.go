package loadgen

import (
	"context"
	"time"
)

// sleeper waits until a due time. Each sending goroutine has its own.
type sleeper interface {
	sleepUntil(t time.Time)
	close()
}

// maxSleep bounds one wait, so that a slot waiting for a request due far
// ahead (a low Rate, many slots) notices a canceled context this soon.
const maxSleep = 50 * time.Millisecond

// sleepUntil waits with sl until t, or until ctx ends (checked every
// maxSleep).
func sleepUntil(ctx context.Context, sl sleeper, t time.Time) {
	for ctx.Err() == nil {
		if time.Until(t) <= maxSleep {
			sl.sleepUntil(t)
			return
		}
		sl.sleepUntil(time.Now().Add(maxSleep))
	}
}

// goSleeper waits with time.Sleep.
type goSleeper struct{}

func (goSleeper) sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

func (goSleeper) close() {}
