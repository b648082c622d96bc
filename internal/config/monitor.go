package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Monitor holds the thresholds `featurepipe monitor` checks a feature
// version against (and the alert rules of deploy/prometheus mirror by
// default). The file's top-level monitor block sets defaults for every
// feature; a feature's own monitor block overrides them key by key:
//
//	monitor: {psi: 0.2, null_rate: 0.05, freshness: 5m}
type Monitor struct {
	// PSI is the highest population stability index of the live values
	// against the training baseline. Default 0.2.
	PSI float64
	// NullRate is how much the null rate may rise above the baseline's (with
	// no baseline: the highest null rate), in [0, 1]. Default 0.05.
	NullRate float64
	// Freshness is how old the newest event applied may be (a Go
	// duration: 90s, 5m, 2h). Default 5m.
	Freshness time.Duration
}

// DefaultMonitor are the thresholds of a file without a monitor block.
var DefaultMonitor = Monitor{PSI: 0.2, NullRate: 0.05, Freshness: 5 * time.Minute}

var monitorKeys = []string{"psi", "null_rate", "freshness"}

// decodeMonitor reads the monitor block n (nil: absent) at path over base.
func (d *decoder) decodeMonitor(n *yaml.Node, path string, base Monitor) Monitor {
	if n == nil {
		return base
	}
	m, ok := d.mapping(n, path, monitorKeys)
	if !ok {
		return base
	}
	out := base
	if v := d.number(m, "psi"); v != nil {
		if *v <= 0 {
			d.addf(m.lineOf("psi"), m.field("psi"), "must be above 0 (0.1: moderate shift, 0.25: major); got %v", *v)
		} else {
			out.PSI = *v
		}
	}
	if v := d.number(m, "null_rate"); v != nil {
		if *v < 0 || *v > 1 {
			d.addf(m.lineOf("null_rate"), m.field("null_rate"), "must be a fraction in [0, 1]; got %v", *v)
		} else {
			out.NullRate = *v
		}
	}
	if s := d.str(m, "freshness", false, "a duration such as 5m"); s != "" {
		if v, err := time.ParseDuration(s); err != nil || v <= 0 {
			d.addf(m.lineOf("freshness"), m.field("freshness"), "expected a positive duration such as 90s, 5m or 2h; got %q", s)
		} else {
			out.Freshness = v
		}
	}
	return out
}

// String renders the thresholds as a monitor block would.
func (m Monitor) String() string {
	return fmt.Sprintf("{psi: %v, null_rate: %v, freshness: %s}", m.PSI, m.NullRate, m.Freshness)
}
