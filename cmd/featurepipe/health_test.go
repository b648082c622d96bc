package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHealthzReportsAStuckWorker(t *testing.T) {
	var stuck error
	srv := httptest.NewServer(metricsMux(prometheus.NewRegistry(), func() error { return stuck }))
	defer srv.Close()
	get := func() (int, string) {
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("healthy worker: /healthz = %d %q, want 200 ok", code, body)
	}
	stuck = errors.New("worker stuck: one poll-loop step has run for 1m0s (limit 30s)")
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "poll-loop step") {
		t.Fatalf("stuck worker: /healthz = %d %q, want 503 with the reason", code, body)
	}
}
