//go:build !linux

package loadgen

import "time"

// sleepUntil returns at t or shortly after.
func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}
