package e2e

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// `featurepipe load` self-hosted: embedded broker and worker in its process,
// `featurepipe serve` as a child process, every request answered, the
// server's own handler time read from its /metrics, and no lookup process
// left behind.
func TestLoadCommandSelfHosted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the featurepipe binary")
	}
	out, err := exec.Command(binary(t), "load", "--rate", "400", "--duration", "1s", "--warmup", "250ms",
		"--keys", "40", "--events-per-key", "3", "--connections", "4").CombinedOutput()
	if err != nil {
		t.Fatalf("featurepipe load: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"400 due, 400 sent, 400 ok, 0 errors, 0 never sent",
		"`featurepipe serve` in its own process",
		"server-side handler time (featurepipe_lookup_seconds",
		"from scheduled time",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	m := regexp.MustCompile(`lookup service \(pid (\d+)\)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("output names no lookup service pid:\n%s", text)
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("the lookup service (pid %d) is still running after load returned (kill 0: %v)", pid, err)
	}
}

// `featurepipe load --baseline` drives a trivial server in a child process
// with the same generator, and stops it afterwards.
func TestLoadCommandBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the featurepipe binary")
	}
	out, err := exec.Command(binary(t), "load", "--baseline", "--rate", "400", "--duration", "1s", "--warmup", "0s", "--connections", "4").CombinedOutput()
	if err != nil {
		t.Fatalf("featurepipe load --baseline: %v\n%s", err, out)
	}
	text := string(out)
	if !strings.Contains(text, "400 due, 400 sent, 400 ok, 0 errors, 0 never sent") || !strings.Contains(text, "--baseline: a trivial net/http server") {
		t.Errorf("unexpected report:\n%s", text)
	}
	m := regexp.MustCompile(`baseline server \(pid (\d+)\)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("output names no baseline server pid:\n%s", text)
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("the baseline server (pid %d) is still running after load returned (kill 0: %v)", pid, err)
	}
}
