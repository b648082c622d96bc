package worker

import (
	"strings"
	"testing"
	"time"
)

func TestHealthy(t *testing.T) {
	ago := func(d time.Duration) int64 { return time.Now().Add(-d).UnixNano() }
	tests := []struct {
		name           string
		step, callback int64
		wantErr        string
	}{
		{name: "idle, waiting for records, is healthy"},
		{name: "a step shorter than the bound is healthy", step: ago(time.Second)},
		{name: "a step longer than the bound is stuck", step: ago(time.Minute), wantErr: "poll-loop step"},
		{name: "a revoke callback longer than the bound is stuck", callback: ago(time.Minute), wantErr: "rebalance callback"},
		{name: "a short callback during a short step is healthy", step: ago(time.Second), callback: ago(time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &Worker{o: Options{StallAfter: 30 * time.Second}}
			w.stepStart.Store(tc.step)
			w.callbackStart.Store(tc.callback)
			err := w.Healthy()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Healthy() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Healthy() = %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}
