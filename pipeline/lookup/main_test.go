package lookup

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"

	"github.com/featurepipe/featurepipe/internal/state"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Run returns only after the registry follower it started has returned: no
// goroutine of it is left the moment Run returns (goleak would tolerate one
// that ends shortly after; this checks at once, over several runs, since an
// unwaited follower usually, not always, is still there).
func TestRunWaitsForTheRegistryFollower(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := loadTestConfig(t)
	for i := range 10 {
		st, err := OpenStore(t.TempDir(), state.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := New(Options{Brokers: c.ListenAddrs(), Config: cfg, Store: st, LookupLogSample: NoLookupLog})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		for deadline := time.Now().Add(30 * time.Second); !svc.Ready(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the service did not become ready")
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if strings.Contains(stacks, "registry.Follow") {
			t.Fatalf("run %d: registry.Follow still runs after Run returned:\n%s", i, stacks)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
