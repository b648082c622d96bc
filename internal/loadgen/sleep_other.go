//go:build !linux

package loadgen

// newSleeper returns time.Sleep's sleeper: on systems without timerfd(2)
// a wait may overshoot by up to 1ms when the process is otherwise idle.
func newSleeper() sleeper { return goSleeper{} }
