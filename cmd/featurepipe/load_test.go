package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A child that ignores SIGTERM is killed after the grace period, and stop
// returns only once it has exited and been waited for: its files may be
// removed right after.
func TestChildStopKillsAndWaits(t *testing.T) {
	// The shell ignores SIGTERM, leaves a grandchild holding its stdout
	// for a second (so that Wait, which copies stdout to out, returns only
	// then, well after the SIGKILL), and says ready on stderr.
	cmd := exec.Command("sh", "-c", `trap '' TERM; sleep 1 & echo ready >&2; while :; do sleep 0.05; done`)
	var out bytes.Buffer
	cmd.Stdout = &out
	ready, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	c, err := startCmd(cmd)
	if err != nil {
		t.Skipf("no sh: %v", err)
	}
	buf := make([]byte, 16)
	if n, _ := ready.Read(buf); !strings.HasPrefix(string(buf[:n]), "ready") {
		t.Fatalf("child said %q, want ready", buf[:n])
	}
	c.grace = 100 * time.Millisecond
	start := time.Now()
	c.stop()
	select {
	case <-c.done:
	default:
		t.Fatal("stop returned before the child was waited for")
	}
	if waited := time.Since(start); waited < c.grace {
		t.Fatalf("stop returned after %s, before the %s grace period: SIGTERM was not ignored?", waited, c.grace)
	}
	var exit *exec.ExitError
	if !errors.As(c.err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child's exit: %v, want killed by SIGKILL", c.err)
	}
	c.stop() // a second stop of an exited child returns at once
}

// A child that exits on SIGTERM is not waited for the whole grace period.
func TestChildStopTerminates(t *testing.T) {
	c, err := startCmd(exec.Command("sleep", "60"))
	if err != nil {
		t.Skipf("no sleep: %v", err)
	}
	start := time.Now()
	c.stop()
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("stop took %s for a child that exits on SIGTERM", waited)
	}
	var exit *exec.ExitError
	if !errors.As(c.err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("child's exit: %v, want terminated by SIGTERM", c.err)
	}
}
