package state

import (
	"errors"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Events counted in featurepipe_state_events_total{store,event}.
const (
	EventBackgroundError = "background_error" // a flush or compaction failed (Pebble retries)
	EventDataCorruption  = "data_corruption"  // a corrupt block or file was found
	EventDiskSlow        = "disk_slow"        // a disk operation took longer than Pebble's threshold (5s)
	EventWriteStall      = "write_stall"      // writes were stopped: too many memtables or L0 files
	EventLowDiskSpace    = "low_disk_space"   // the disk is nearly full
)

// stateEvents returns the events counter registered on r, or the one already
// registered there (a process with two stores, as in dev, shares it). A nil r
// gets an unregistered counter.
func stateEvents(r prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "featurepipe", Name: "state_events_total",
		Help: "Pebble background events by store and event: background_error, data_corruption, disk_slow, write_stall, low_disk_space."},
		[]string{"store", "event"})
	if r == nil {
		return c, nil
	}
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, err
	}
	return c, nil
}

// eventListener reports the Pebble events that need attention to log and
// counts them in events (curried with the store label). It is called from
// Pebble's background goroutines, so it only logs and counts: it never
// blocks or calls back into the store.
func eventListener(log *zap.Logger, events *prometheus.CounterVec) pebble.EventListener {
	bg := events.WithLabelValues(EventBackgroundError)
	corrupt := events.WithLabelValues(EventDataCorruption)
	slow := events.WithLabelValues(EventDiskSlow)
	stall := events.WithLabelValues(EventWriteStall)
	low := events.WithLabelValues(EventLowDiskSpace)
	return pebble.EventListener{
		BackgroundError: func(err error) {
			bg.Inc()
			log.Error("state store background error (flush or compaction failed; Pebble retries)", zap.Error(err))
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			corrupt.Inc()
			log.Error("state store data corruption", zap.String("path", info.Path), zap.Error(info.Details))
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			slow.Inc()
			log.Warn("state store disk is slow", zap.String("path", info.Path), zap.String("op", info.OpType.String()),
				zap.Duration("duration", info.Duration))
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			stall.Inc()
			log.Warn("state store writes stalled", zap.String("reason", info.Reason))
		},
		WriteStallEnd: func() {
			log.Info("state store writes resumed")
		},
		LowDiskSpace: func(info pebble.LowDiskSpaceInfo) {
			low.Inc()
			log.Warn("state store disk space is low", zap.Uint64("available_bytes", info.AvailBytes),
				zap.Uint64("total_bytes", info.TotalBytes))
		},
	}
}
