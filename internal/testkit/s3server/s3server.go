// Package s3server starts a real S3-compatible server for featurepipe's
// tests: versitygw (github.com/versity/versitygw, Apache-2.0) with its posix
// backend, one fresh process per test on a free 127.0.0.1 port, storing
// objects as plain files under a temporary directory. Test code only.
//
// The binary is built from its Go module by deploy/versitygw/run.sh build
// (make test-s3 does it) into .cache/versitygw/bin, or named by $VERSITYGW.
// Without either a test using Start is skipped, unless
// FEATUREPIPE_REQUIRE_S3 is set (make test-s3 sets it): then it fails.
package s3server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Credentials of the server's root account, and its region.
const (
	AccessKey = "featurepipe-test"
	SecretKey = "featurepipe-test-secret"
	Region    = "us-east-1"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is "http://127.0.0.1:PORT".
	Endpoint string
	// Root is the posix backend's directory: bucket B's object K is the
	// file Root/B/K, so a test can damage an object behind the server's
	// back.
	Root string
}

// Env returns the environment variables a client uses to reach the server:
// AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.
func (s *Server) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL":      s.Endpoint,
		"AWS_ACCESS_KEY_ID":     AccessKey,
		"AWS_SECRET_ACCESS_KEY": SecretKey,
		"AWS_REGION":            Region,
	}
}

// Binary returns the versitygw binary's path: $VERSITYGW, else
// .cache/versitygw/bin/versitygw in the module root; "" if neither exists.
func Binary() string {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".cache", "versitygw", "bin", "versitygw")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Start starts a fresh server, stopped at the end of the test. It waits up
// to a minute for the server to answer (it starts in well under a second).
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("FEATUREPIPE_REQUIRE_S3") != "" {
			t.Fatal("no versitygw binary: build it with deploy/versitygw/run.sh build, or set VERSITYGW")
		}
		t.Skip("no versitygw binary: run make test-s3 (or deploy/versitygw/run.sh build) to test against a real S3 server")
	}
	root := filepath.Join(t.TempDir(), "s3")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	addr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(filepath.Dir(root), "versitygw.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", root)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey, "VGW_REGION="+Region)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
	})
	s := &Server{Endpoint: "http://" + addr, Root: root}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		if err := ping(ctx, s.Endpoint); err == nil {
			return s
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("versitygw exited before answering: %v\n%s", err, b)
		case <-ctx.Done():
			b, _ := os.ReadFile(logPath)
			t.Fatalf("versitygw did not answer on %s within a minute\n%s", addr, b)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ping succeeds once the server answers HTTP at all (an anonymous request
// gets 403).
func ping(ctx context.Context, endpoint string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return errors.New(resp.Status)
	}
	return nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return strings.Replace(ln.Addr().String(), "[::1]", "127.0.0.1", 1), nil
}
