package ui

import (
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPages renders each page of a catalog of 500 feature names (600
// versions, 100 services, datasets and models) as a request would, server
// time only. "cold" rebuilds the catalog snapshot on every request (the
// cost of the first request after Options.Refresh, lineage.Build
// included); "warm" reuses it, as the requests in between do. Target: each
// page under 50 ms cold. cpu-ms/op is the process's CPU time per page
// (garbage collection included), the cost that wall time shows on an idle
// machine.
//
//	go test -run '^$' -bench Pages -benchtime 20x ./pipeline/ui/
func BenchmarkPages(b *testing.B) {
	f := newFixture(b, 500)
	pages := []struct{ name, target string }{
		{"search", "/ui/"},
		{"search-query", "/ui/?q=sum+transactions&owner=team-b"},
		{"feature", "/ui/features/f001@1"},
		{"service", "/ui/services/svc00"},
		{"dataset", "/ui/datasets/train_svc00@1"},
		{"model", "/ui/models/m00@1"},
		{"source", "/ui/sources/transactions"},
		{"entity", "/ui/entities/user"},
		{"console", "/ui/console"},
	}
	for _, mode := range []struct {
		name    string
		refresh int64
	}{{"cold", -1}, {"warm", 0}} {
		o := Options{API: http.NotFoundHandler()}
		if mode.refresh < 0 {
			o.Refresh = -1
		}
		u := f.ui(b, o)
		for _, p := range pages {
			b.Run(mode.name+"/"+p.name, func(b *testing.B) {
				cpu0 := cpuTime()
				for b.Loop() {
					w := httptest.NewRecorder()
					u.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p.target, nil))
					if w.Code != 200 {
						b.Fatalf("%s: %d", p.target, w.Code)
					}
				}
				// CPU time per page: on a machine shared with other work
				// (wall time then includes waiting for a core), the cost.
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			})
		}
	}
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
