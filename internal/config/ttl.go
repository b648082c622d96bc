package config

import (
	"strings"

	"github.com/featurepipe/featurepipe/aggregations"
)

// Expired reports whether feature f's value as of T, folded into ir, has
// expired under its TTL: f has a ttl, ir is not empty, and ir's newest event
// (ir.LastTS, the newest event time in the window) is more than TTL older
// than T (T - LastTS > TTL; an event exactly TTL old is still fresh). An
// expired value is served as the empty-window value (count and sum 0, the
// others null or the feature's default) with status EXPIRED.
//
// This is the one TTL rule: the lookup service and backfill (so `skew`)
// both call it on the IR they fold. An empty window is EMPTY_WINDOW, not
// EXPIRED, even when the entity's newest event is older than the TTL: the
// status says what the window holds. Since load requires TTL <= the window
// size for finite windows, EXPIRED covers every newest-event age in
// (TTL, window + hop) and EMPTY_WINDOW the ages beyond.
func (f *Feature) Expired(ir aggregations.IR, T int64) bool {
	return f.TTL > 0 && !ir.Empty() && T-ir.LastTS > f.TTL
}

// checkTTL parses the feature's ttl into TTL: a positive duration, at most
// the window's size for finite windows (a longer one could never expire a
// value the window still holds, bar its sawtooth hop), on features
// aggregated from a source (a derived feature has no events of its own: put
// the ttl on its inputs).
func (d *decoder) checkTTL(it featureItem) {
	ft, m := it.f, it.m
	if n := m.get("ttl"); n == nil || it.ttl == "" {
		return // absent, or its type already reported
	}
	if m.get("expression") != nil {
		d.addf(m.lineOf("ttl"), m.field("ttl"), "a derived feature has no events of its own to expire; put the ttl on the features its expression reads")
		return
	}
	ms, err := aggregations.ParseDuration(strings.TrimSpace(it.ttl))
	if err != nil {
		d.addf(m.lineOf("ttl"), m.field("ttl"), "%q: %s; write a positive duration with unit s, m, h or d, e.g. 30d",
			it.ttl, strings.TrimPrefix(err.Error(), aggregations.ErrInvalidDuration.Error()+" "))
		return
	}
	if w := ft.Window; w.Size > 0 && ms > w.Size {
		d.addf(m.lineOf("ttl"), m.field("ttl"), "ttl %s is longer than the window %s: every event in the window is younger than that, so nothing would ever expire; use a ttl of at most %s, or a longer window",
			aggregations.FormatDuration(ms), aggregations.FormatDuration(w.Size), aggregations.FormatDuration(w.Size))
		return
	}
	ft.TTL = ms
}
