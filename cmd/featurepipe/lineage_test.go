package main

import (
	"strings"
	"testing"
)

// lineage and describe refuse bad usage with exit 2; plan exits 1 on every
// error, bad flags included, because its exit 2 means "breaks dependents".
func TestLineagePlanDescribeUsage(t *testing.T) {
	for _, cmd := range []string{"lineage", "plan", "describe"} {
		code, _, stderr := execCLI(cmd, "--help")
		if code != 0 || !strings.Contains(stderr, "Usage: featurepipe "+cmd) || !strings.Contains(stderr, "--brokers") {
			t.Errorf("%s --help: exit %d\n%s", cmd, code, stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"lineage", "--brokers", "127.0.0.1:1"}, 2, "a NODE is required"},
		{[]string{"lineage", "feature:a", "--brokers", "127.0.0.1:1"}, 2, "a feature is named with its version, as feature:a@1"},
		{[]string{"lineage", "table:a", "--brokers", "127.0.0.1:1"}, 2, "want KIND:NAME with KIND one of topic, source, feature"},
		{[]string{"lineage", "service:s", "x", "--brokers", "127.0.0.1:1"}, 2, "unexpected arguments: x"},
		{[]string{"lineage", "service:s", "--upstream", "--downstream", "--brokers", "127.0.0.1:1"}, 2, "exclude each other"},
		{[]string{"lineage", "--json", "service:s", "--dot", "--brokers", "127.0.0.1:1"}, 2, "--json and --dot exclude each other"},
		{[]string{"lineage", "service:s"}, 2, "--brokers is required"},
		{[]string{"describe", "model:m", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"plan", "--brokers", "127.0.0.1:1"}, 1, "--config is required"},
		{[]string{"plan", "--bogus"}, 1, "flag provided but not defined: -bogus"},
		{[]string{"plan", "--brokers", "127.0.0.1:1", "--config", "no-such-file.yaml"}, 1, "no-such-file.yaml"},
	} {
		code, _, stderr := execCLI(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d\n%s\nwant exit %d saying %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}
