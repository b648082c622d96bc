// Package metrics defines featurepipe's Prometheus metrics. Each component
// gets a struct registered against a prometheus.Registerer passed in, never
// the global registry, so tests can use their own.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "featurepipe"

// NewRegistry returns a registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves the registry in the Prometheus exposition format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// Worker holds the stream worker's metrics.
type Worker struct {
	EventsIn       *prometheus.CounterVec // source
	DeadLetters    *prometheus.CounterVec // source, reason
	DroppedLate    *prometheus.CounterVec // feature
	ConsumerLag    *prometheus.GaugeVec   // topic, partition
	BatchCommit    prometheus.Histogram   // seconds per Pebble batch commit
	BatchEvents    prometheus.Histogram   // events per batch
	TilesPublished prometheus.Counter     // feature-log records (upserts and tombstones)
	Errors         *prometheus.CounterVec // stage
	Assigned       prometheus.Gauge       // partitions owned
	OffCanonical   *prometheus.CounterVec // source
	// Repartitioned counts re-keyed records produced to repartition topics.
	Repartitioned prometheus.Counter
	// RepartitionDuplicates counts repartition records skipped because
	// their source offset was at or below the high-water mark, by topic.
	RepartitionDuplicates *prometheus.CounterVec
	// Publications counts the worker's publications to the feature log
	// (each one produce flush), by trigger: caught_up (adaptive, a light
	// stream), interval, cache_full, revoke, shutdown, snapshot, republish.
	Publications *prometheus.CounterVec
	// EntityLoads counts entities read back from the state store because
	// neither entity cache held them, by how: prefetch (in parallel,
	// before a batch is applied) or single (one at a time while it is).
	EntityLoads *prometheus.CounterVec
}

// NewWorker creates and registers the worker metrics on r.
func NewWorker(r prometheus.Registerer) *Worker {
	m := &Worker{
		EventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "events_in_total",
			Help: "Source records applied to state, by source."}, []string{"source"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "dead_letters_total",
			Help: "Source records sent to the dead-letter topic, by source and reason."}, []string{"source", "reason"}),
		DroppedLate: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "events_too_late_total",
			Help: "Events older than a feature's window plus one hop, counted and dropped for that feature."}, []string{"feature"}),
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "consumer_lag_records",
			Help: "High watermark minus the next offset to apply, per source partition."}, []string{"topic", "partition"}),
		BatchCommit: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "batch_commit_seconds",
			Help: "Latency of one Pebble batch commit (state and offset together).", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		BatchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "batch_events",
			Help: "Source records per committed batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		TilesPublished: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "feature_log_records_total",
			Help: "Tile upserts and tombstones produced to the feature log."}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "worker_errors_total",
			Help: "Errors by stage (commit, publish, dead_letter, fetch, snapshot, schema_registry)."}, []string{"stage"}),
		Assigned: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "assigned_partitions",
			Help: "Source partitions this worker owns."}),
		OffCanonical: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "records_off_canonical_partition_total",
			Help: "Source records read from another partition than their key's canonical one (murmur2, as Kafka's Java client " +
				"and franz-go partition keys), by source: a producer with another partitioner. Values stay exact; see the README."}, []string{"source"}),
	}
	m.Repartitioned = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "repartition_records_total",
		Help: "Re-keyed copies of source records produced to repartition topics (acknowledged before their source offset is committed)."})
	m.RepartitionDuplicates = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "repartition_duplicates_total",
		Help: "Repartition records skipped as duplicates (source offset at or below the high-water mark), by repartition topic."}, []string{"topic"})
	m.Publications = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "publications_total",
		Help: "Publications of changed tiles to the feature log (one produce flush each), by trigger: caught_up (adaptive: the poll " +
			"caught up, a light stream), interval, cache_full, revoke, shutdown, snapshot, republish."}, []string{"trigger"})
	m.EntityLoads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "entity_loads_total",
		Help: "Entities read from the state store because no entity cache held them (new ones, or evicted: see " +
			"--max-cached-entities), by how: prefetch (in parallel before a batch's apply) or single (one at a time during it)."}, []string{"how"})
	r.MustRegister(m.EventsIn, m.DeadLetters, m.DroppedLate, m.ConsumerLag, m.BatchCommit, m.BatchEvents,
		m.TilesPublished, m.Errors, m.Assigned, m.OffCanonical, m.Repartitioned, m.RepartitionDuplicates, m.Publications,
		m.EntityLoads)
	// Every stage's error series exists from the start at 0, so that
	// rate() and increase() see the first error (and alerts can use them).
	for _, stage := range []string{"commit", "publish", "dead_letter", "fetch", "snapshot"} {
		m.Errors.WithLabelValues(stage)
	}
	return m
}

// Lookup holds the lookup service's metrics.
type Lookup struct {
	Latency  *prometheus.HistogramVec // route
	Requests *prometheus.CounterVec   // route, code
	// FeatureLookups counts values served (one per key and feature version)
	// by feature name, version and consumer (bounded: see lookup.Options.MaxConsumers).
	FeatureLookups *prometheus.CounterVec // feature, version, consumer
	// DeprecatedLookups is FeatureLookups of deprecated versions only.
	DeprecatedLookups *prometheus.CounterVec // feature, version, consumer
	LogRecords        prometheus.Counter     // feature-log records applied to the view
	// ViewWrites counts writes of entity views (one per entity a batch of
	// feature-log records changed: a merge operand of its records, see
	// pipeline/lookup/viewmerge.go): divided by LogRecords, how well
	// batches gather each entity's records.
	ViewWrites prometheus.Counter
	LogLag     *prometheus.GaugeVec // partition
	Ready      prometheus.Gauge
	// LookupLogRecords counts lookup-log records by result: sent (acked by
	// Kafka), dropped (the producer buffer was full) or error (failed).
	LookupLogRecords *prometheus.CounterVec // result
	// EndToEnd observes, per feature-tile upsert applied to the view once
	// it is ready, the time from the feature-log record's timestamp (the
	// Kafka timestamp of the newest source record folded into the tile
	// since its last publication) to the view commit that makes it visible.
	EndToEnd prometheus.Histogram
	// AnswerCache counts the keys answered with the answer cache on, by
	// result: hit (every value copied from the cache) or miss (folded
	// from the view, then cached).
	AnswerCache *prometheus.CounterVec // result
}

// NewLookup creates and registers the lookup metrics on r.
func NewLookup(r prometheus.Registerer) *Lookup {
	m := &Lookup{
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "lookup_seconds",
			Help:    "Lookup request latency by route, from handler entry (headers read, body not yet) to response written.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .1, 1}}, []string{"route"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests by route and status code."}, []string{"route", "code"}),
		FeatureLookups: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "feature_lookups_total",
			Help: "Feature values served (one per key and feature), by feature name, version and consumer (names beyond the cap fold into other)."},
			[]string{"feature", "version", "consumer"}),
		DeprecatedLookups: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "deprecated_lookups_total",
			Help: "Values of deprecated feature versions served, by feature name, version and consumer: who still has to move to the replacement."},
			[]string{"feature", "version", "consumer"}),
		LogRecords: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "view_records_total",
			Help: "Feature-log records applied to the lookup view."}),
		ViewWrites: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "view_writes_total",
			Help: "Entity view writes to the lookup view: one per entity a batch of feature-log records changed (a merge of its records)."}),
		LogLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "view_lag_records",
			Help: "Feature-log high watermark minus the next offset to read, per partition."}, []string{"partition"}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "view_ready",
			Help: "1 once the view has caught up with the feature log's end offsets seen at start."}),
		LookupLogRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "lookup_log_records_total",
			Help: "Served-lookup records for the lookup-log topic, by result: sent, dropped (producer buffer full) or error."}, []string{"result"}),
		EndToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "end_to_end_latency_seconds",
			Help: "Source record Kafka timestamp to visible in this replica's view, per feature-tile upsert applied once the view is ready " +
				"(a tile republished without a new source record measures publication to visible).",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}),
		AnswerCache: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "lookup_answer_cache_keys_total",
			Help: "Keys answered with the answer cache on, by result: hit (values copied from the cache) or miss (folded from the view, then cached)."},
			[]string{"result"}),
	}
	r.MustRegister(m.Latency, m.Requests, m.FeatureLookups, m.DeprecatedLookups, m.LogRecords, m.ViewWrites, m.LogLag, m.Ready, m.LookupLogRecords, m.EndToEnd,
		m.AnswerCache)
	return m
}

// Freshness is the feature-freshness collector: at every scrape it asks
// newest for the newest event time applied per feature version and exports
// featurepipe_feature_freshness_seconds{feature,version} = now - that time
// (clamped at 0: an event time slightly in the future, within the worker's
// limits, reads as fresh). A version with no event applied yet is not
// exported. Cost: one call of newest per scrape; nothing on the hot path.
type Freshness struct {
	desc   *prometheus.Desc
	now    func() time.Time
	newest func(emit func(feature, version string, newestMs int64))
}

// NewFreshness creates and registers the freshness collector on r. newest
// must call emit once per feature version it knows an event time of (ms
// since the epoch); it runs on the scraping goroutine.
func NewFreshness(r prometheus.Registerer, now func() time.Time, newest func(emit func(feature, version string, newestMs int64))) *Freshness {
	f := &Freshness{
		desc: prometheus.NewDesc(namespace+"_feature_freshness_seconds",
			"Now minus the newest event time applied to state, per feature version, over the source partitions this worker owns "+
				"(take the min over workers). Absent until the worker applies an event of the version.",
			[]string{"feature", "version"}, nil),
		now: now, newest: newest,
	}
	r.MustRegister(f)
	return f
}

// Describe implements prometheus.Collector.
func (f *Freshness) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

// Collect implements prometheus.Collector.
func (f *Freshness) Collect(ch chan<- prometheus.Metric) {
	now := f.now().UnixMilli()
	f.newest(func(feature, version string, newestMs int64) {
		ch <- prometheus.MustNewConstMetric(f.desc, prometheus.GaugeValue, float64(max(now-newestMs, 0))/1000, feature, version)
	})
}
