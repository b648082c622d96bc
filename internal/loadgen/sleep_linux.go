package loadgen

import (
	"syscall"
	"time"
)

// sleepUntil returns at t or shortly after. Long waits use time.Sleep; the
// last 2ms (or all of a short wait) use nanosleep(2), whose wake-up is
// precise to the kernel's timer slack (50µs by default), where the Go
// runtime's timers may fire up to 1ms late when every goroutine is idle
// (it waits in epoll with millisecond resolution). Waits under 20µs are
// not slept at all: a nanosleep costs about as much.
func sleepUntil(t time.Time) {
	d := time.Until(t)
	if d > 3*time.Millisecond {
		time.Sleep(d - 2*time.Millisecond)
		d = time.Until(t)
	}
	if d < 20*time.Microsecond {
		return
	}
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
