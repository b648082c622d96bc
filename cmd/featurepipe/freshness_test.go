package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/lookup"
)

// `featurepipe load --freshness` against a running `featurepipe dev`: every
// probe becomes visible through the lookup API (its count reaches the
// probe's number) and the report gives the percentiles. A pipeline that
// never showed the probes would fail the run ("not visible within").
func TestLoadFreshnessAgainstDev(t *testing.T) {
	if testing.Short() {
		t.Skip("starts featurepipe dev")
	}
	listenAddr, kafkaAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	devDone := make(chan int, 1)
	var devOut, devErr bytes.Buffer
	go func() {
		devDone <- run(ctx, []string{"dev", "--listen", listenAddr, "--kafka", kafkaAddr, "--users", "5", "--rate", "20", "--log-level", "error"}, &devOut, &devErr)
	}()
	defer func() {
		cancel()
		if code := <-devDone; code != 0 {
			t.Errorf("dev exited %d: %s", code, devErr.String())
		}
	}()
	base := "http://" + listenAddr
	deadline := time.Now().Add(time.Minute)
	for {
		var resp lookup.LookupResponse
		status, err := postLookup(ctx, base, lookup.LookupRequest{Entity: "user", Keys: []string{"u0001"}, Features: []string{freshnessFeature}}, &resp)
		if err == nil && status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("featurepipe dev not ready after a minute: %v (HTTP %d); %s", err, status, devErr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	code, stdout, stderr := execCLI("load", "--freshness", "--url", base, "--brokers", kafkaAddr,
		"--rate", "300", "--duration", "2s", "--warmup", "0s", "--keys", "5", "--probe-interval", "50ms")
	if code != 0 {
		t.Fatalf("load --freshness exited %d: %s\n%s", code, stderr, stdout)
	}
	t.Log(stdout)
	for _, want := range []string{" 0 not visible", "producer ack → visible", "p99"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the report lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, " 0 measured") {
		t.Errorf("no probe was measured:\n%s", stdout)
	}
}

func TestLoadFreshnessFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"load", "--freshness", "--url", "http://127.0.0.1:1"}, "needs --brokers"},
		{[]string{"load", "--freshness", "--brokers", "127.0.0.1:1"}, "--brokers needs --url"},
		{[]string{"load", "--brokers", "127.0.0.1:1"}, "apply to --freshness only"},
		{[]string{"load", "--fixed-publish-interval"}, "apply to --freshness only"},
		{[]string{"load", "--freshness", "--url", "http://127.0.0.1:1", "--brokers", "127.0.0.1:1", "--fixed-publish-interval"}, "not with --url"},
		{[]string{"load", "--freshness", "--baseline"}, "exclude each other"},
		{[]string{"load", "--freshness", "--probe-interval", "0s"}, "--probe-interval must be positive"},
	} {
		code, _, stderr := execCLI(tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
