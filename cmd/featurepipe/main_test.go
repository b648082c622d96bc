package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/featurepipe/featurepipe/internal/httpserve"
)

// TestMain fails the package's tests if any goroutine outlives them
// (except fasthttp's Date updater, which lives as long as the process).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction(httpserve.DateUpdater))
}
