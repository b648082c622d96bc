package worker

import (
	"fmt"
	"time"
)

// Healthy returns nil while the worker makes progress, and an error when
// one poll-loop step (processing one poll's records: apply, commit,
// publication, bootstraps, status) or one rebalance callback (publishing
// revoked partitions) has run for longer than Options.StallAfter. Waiting
// for records is not a step: an idle worker is healthy. A stuck worker holds
// its partitions (and, while a rebalance waits for it, the moving ones) with
// nothing processed, so `/healthz` reports it and Kubernetes restarts it;
// that loses nothing, since state and offsets are in Pebble. Safe for
// concurrent use; cost: two atomic loads.
func (w *Worker) Healthy() error {
	now := time.Now()
	if err := stalled("poll-loop step", w.stepStart.Load(), now, w.o.StallAfter); err != nil {
		return err
	}
	return stalled("rebalance callback", w.callbackStart.Load(), now, w.o.StallAfter)
}

// stalled reports an error when the activity started at start (unix ns, 0:
// none running) has run longer than limit at now.
func stalled(what string, start int64, now time.Time, limit time.Duration) error {
	if start == 0 {
		return nil
	}
	if d := now.Sub(time.Unix(0, start)); d > limit {
		return fmt.Errorf("worker stuck: one %s has run for %s (limit %s)", what, d.Round(time.Millisecond), limit)
	}
	return nil
}
