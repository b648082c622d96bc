package loadgen

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timerSleeper waits on a timerfd(2) registered with the Go netpoller.
//
// Why not time.Sleep: when every goroutine is idle, the runtime waits in
// epoll with millisecond resolution, so a 50µs timer may fire up to 1ms
// late, and that delay would count in every latency. Why not nanosleep(2):
// a goroutine in a blocking syscall keeps its P (one of GOMAXPROCS) until
// the runtime's monitor takes it back, which on 2 cores starves the server
// being measured. A timerfd wakes epoll at its expiry (precise to the
// kernel's timer slack, 50µs by default) while the waiting goroutine is
// parked like one reading a socket. Each wait costs two or three syscalls.
type timerSleeper struct {
	fd  int
	f   *os.File
	buf [8]byte
}

// newSleeper returns a timerfd sleeper, or time.Sleep when the kernel has
// no timerfd (never on Linux ≥ 2.6.25).
func newSleeper() sleeper {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return goSleeper{}
	}
	return &timerSleeper{fd: fd, f: os.NewFile(uintptr(fd), "timerfd")}
}

// sleepUntil returns at t or shortly after. Waits under 20µs are not slept
// at all: arming and reading the timer costs about as much. If the timerfd
// fails, it waits with time.Sleep instead.
func (s *timerSleeper) sleepUntil(t time.Time) {
	if err := s.wait(t); err != nil {
		goSleeper{}.sleepUntil(t)
	}
}

// wait arms the timer to expire at t and blocks until it does.
func (s *timerSleeper) wait(t time.Time) error {
	d := time.Until(t)
	if d < 20*time.Microsecond {
		return nil
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(s.fd, 0, &spec, nil); err != nil {
		return fmt.Errorf("arm timerfd: %w", err)
	}
	if _, err := s.f.Read(s.buf[:]); err != nil {
		return fmt.Errorf("read timerfd: %w", err)
	}
	return nil
}

func (s *timerSleeper) close() { s.f.Close() }
