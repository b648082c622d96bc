package lookup

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Consumers: who reads which feature version.
//
// A caller names itself with the ConsumerHeader ("X-Featurepipe-Consumer:
// fraud-api"); without it the consumer is AnonymousConsumer. With API tokens
// (Options.Tokens) the token's consumer is the consumer: a request may
// repeat it in the header, but a header naming another consumer is refused
// with 400 consumer_mismatch (a client configured for one identity but
// sending another's token is a mistake worth seeing, not a silent relabel).
// A consumer name is 1 to 64 characters of letters, digits, '.', '_' and
// '-'; anything else is a 400 invalid_consumer.
//
// The consumer is recorded in every lookup-log entry (with the feature
// service, when the request named one) and counts in
// featurepipe_feature_lookups_total{feature,version,consumer} (values served:
// one per key and feature) and, for deprecated versions,
// featurepipe_deprecated_lookups_total{feature,version,consumer}.
//
// Cardinality: token consumers and "anonymous" always have their own label;
// at most Options.MaxConsumers (default DefaultMaxConsumers, 100) further
// names taken from the header get one, in the order they are first seen by
// this replica; later names are counted under OtherConsumer ("other"). The
// lookup log keeps the real name either way, so usage statistics (package
// usage) are exact.
//
// Cost on the answer path: one lock-free map read per request (the map is
// copied on write, at most MaxConsumers times per replica) and, per feature
// served, an atomic pointer load and a counter add. The counters of a
// (consumer, feature version) pair are created on first use: that first
// request allocates, none after it.

const (
	// ConsumerHeader names the caller of a lookup when the service has no tokens.
	ConsumerHeader = "X-Featurepipe-Consumer"
	// AnonymousConsumer is the consumer of a request without ConsumerHeader
	// (on a service without tokens).
	AnonymousConsumer = "anonymous"
	// OtherConsumer is the metrics label of header-named consumers beyond
	// Options.MaxConsumers.
	OtherConsumer = "other"
	// DefaultMaxConsumers is the default Options.MaxConsumers.
	DefaultMaxConsumers = 100
	// maxConsumerLen bounds a consumer name.
	maxConsumerLen = 64
)

// ValidConsumer reports whether name is a valid consumer name: 1 to 64
// letters, digits, '.', '_' or '-'.
func ValidConsumer(name string) bool {
	if name == "" || len(name) > maxConsumerLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// consumerName returns the consumer of r: tok's consumer when the service
// has tokens (tok non-nil), else the header's name or AnonymousConsumer.
// It allocates nothing.
func consumerName(r *http.Request, tok *Token) (string, *apiError) {
	var hdr string
	if vs := r.Header[ConsumerHeader]; len(vs) > 0 {
		hdr = vs[0]
	}
	if tok != nil {
		if hdr != "" && hdr != tok.Consumer {
			return "", badRequest("consumer_mismatch",
				"header %s names consumer %q but the token belongs to consumer %s: drop the header or send that consumer's token",
				ConsumerHeader, hdr, tok.Consumer)
		}
		return tok.Consumer, nil
	}
	if hdr == "" {
		return AnonymousConsumer, nil
	}
	if !ValidConsumer(hdr) {
		return "", badRequest("invalid_consumer",
			"header %s: %q is not a consumer name (1 to %d letters, digits, '.', '_' or '-')", ConsumerHeader, hdr, maxConsumerLen)
	}
	return hdr, nil
}

// consumerCounters are one consumer's counters of one feature version.
type consumerCounters struct {
	lookups    prometheus.Counter
	deprecated prometheus.Counter // nil unless the version is deprecated
}

// consumerEntry is one metrics label value and its counters, by feature
// index (featureInfo.idx), created on first use.
type consumerEntry struct {
	label    string
	counters []atomic.Pointer[consumerCounters]
}

// consumerSet maps consumer names to their entries (see the cardinality
// rule above).
type consumerSet struct {
	m       atomic.Pointer[map[string]*consumerEntry] // copied on write
	mu      sync.Mutex                                // serializes writers
	named   int                                       // header-named entries added
	full    atomic.Bool                               // named reached max: new names are "other"
	max     int
	other   *consumerEntry
	nFeats  int
	lookups *prometheus.CounterVec
	depr    *prometheus.CounterVec
}

// init prepares the set for the features of the index (feats, by
// featureInfo.idx), with an entry for "anonymous" and every fixed name (the
// token consumers), which do not count against max.
func (cs *consumerSet) init(max int, feats []*featureInfo, lookups, depr *prometheus.CounterVec, fixed []string) {
	cs.max, cs.nFeats, cs.lookups, cs.depr = max, len(feats), lookups, depr
	cs.other = cs.newEntry(OtherConsumer)
	m := map[string]*consumerEntry{AnonymousConsumer: cs.newEntry(AnonymousConsumer)}
	for _, name := range fixed {
		if m[name] == nil {
			m[name] = cs.newEntry(name)
		}
	}
	cs.m.Store(&m)
}

func (cs *consumerSet) newEntry(label string) *consumerEntry {
	return &consumerEntry{label: label, counters: make([]atomic.Pointer[consumerCounters], cs.nFeats)}
}

// get returns name's entry, adding it while fewer than max header-named
// consumers have one, else the shared "other" entry. Once the set is full,
// a name without an entry takes no lock either.
func (cs *consumerSet) get(name string) *consumerEntry {
	if e := (*cs.m.Load())[name]; e != nil {
		return e
	}
	if cs.full.Load() {
		return cs.other
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	old := *cs.m.Load()
	if e := old[name]; e != nil {
		return e
	}
	if cs.named >= cs.max {
		return cs.other
	}
	m := make(map[string]*consumerEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	e := cs.newEntry(name)
	m[name] = e
	cs.named++
	cs.m.Store(&m)
	cs.full.Store(cs.named >= cs.max)
	return e
}

// counters returns e's counters of feature fi, creating them on first use.
func (cs *consumerSet) counters(e *consumerEntry, fi *featureInfo) *consumerCounters {
	p := &e.counters[fi.idx]
	if c := p.Load(); c != nil {
		return c
	}
	v := strconv.Itoa(fi.def.Version)
	c := &consumerCounters{lookups: cs.lookups.WithLabelValues(fi.def.Name, v, e.label)}
	if fi.def.Deprecated {
		c.deprecated = cs.depr.WithLabelValues(fi.def.Name, v, e.label)
	}
	if !p.CompareAndSwap(nil, c) {
		return p.Load()
	}
	return c
}

// count adds a's served values (one per key and requested feature) to the
// counters of consumer a.consumer. It allocates nothing once the
// (consumer, feature) counters exist.
func (s *Service) count(a *lookupAnswer) {
	e := s.consumers.get(a.consumer)
	n := float64(len(a.keys))
	for _, f := range a.feats {
		c := s.consumers.counters(e, f.featureInfo)
		c.lookups.Add(n)
		if c.deprecated != nil {
			c.deprecated.Add(n)
		}
	}
}
