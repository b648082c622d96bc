package lookup

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// lookupLogger writes a lookuplog.Entry for every answered key (with
// probability Options.LookupLogSample) to the lookup-log topic. Entries are
// batched: the entries of many keys and requests go, one per line, into one
// record without a key, produced once it holds logBatchBytes or after
// logBatchLinger. One record per key cost the replica and the broker
// several microseconds per lookup in franz-go's and the broker's
// per-record work (README, "A lookup-log record per batch of entries").
//
// It never blocks or fails a lookup: batches go to the producer with
// TryProduce, and a batch that would take the entries waiting for the
// broker past Options.LookupLogBuffer is dropped and counted, e.g. while
// the broker is slow or down. Records and their buffers are pooled and
// returned in the produce promise, so logging adds little garbage. Entries
// are written with the lookuplog codec's Append functions.
type lookupLogger struct {
	s      *Service
	sample float64 // 0: off
	cl     atomic.Pointer[kgo.Client]

	// mu guards cur, the batch being filled: entries of answered keys, one
	// per line, produced as one record once it holds logBatchBytes or is
	// logBatchLinger old (timer).
	mu    sync.Mutex
	cur   *logRecord
	timer *time.Timer
	// buffered counts the entries produced and not yet acknowledged: a
	// batch that would take it past Options.LookupLogBuffer is dropped.
	buffered atomic.Int64

	sent, dropped, failed prometheus.Counter
	lastErrLog            atomic.Int64 // unix ns of the last error logged
}

const (
	// logBatchBytes is the size at which a batch of lookup-log entries is
	// produced: far below Kafka's default 1 MiB message limit (a batch is
	// at most this plus one key's entry).
	logBatchBytes = 64 << 10
	// logBatchLinger is how long an entry waits for others to share its
	// record, at most.
	logBatchLinger = 10 * time.Millisecond
)

func (l *lookupLogger) init(s *Service) {
	l.s, l.sample = s, s.o.LookupLogSample
	l.sent = s.m.LookupLogRecords.WithLabelValues("sent")
	l.dropped = s.m.LookupLogRecords.WithLabelValues("dropped")
	l.failed = s.m.LookupLogRecords.WithLabelValues("error")
}

// start creates the producer. stop flushes what is buffered (for up to 5
// seconds) and closes it.
func (l *lookupLogger) start(ctx context.Context) (stop func(), err error) {
	if l.sample == 0 {
		return func() {}, nil
	}
	o := &l.s.o
	cl, err := kafka.NewClient(kafka.ConnOf(o.Brokers, o.Config), o.ClientID+"-lookup-log", l.s.log,
		kgo.DefaultProduceTopic(o.Config.Kafka.LookupLogTopic),
		kgo.MaxBufferedRecords(o.LookupLogBuffer), // records hold one entry or more: our own bound (buffered) comes first
		kgo.ProducerLinger(10*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("lookup log producer: %w", err)
	}
	l.timer = time.AfterFunc(time.Hour, l.flushBatch)
	l.timer.Stop()
	l.cl.Store(cl)
	return func() {
		l.cl.Store(nil)
		l.timer.Stop()
		l.mu.Lock()
		lr := l.cur
		l.cur = nil
		l.mu.Unlock()
		if lr != nil {
			l.produce(cl, lr)
		}
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := cl.Flush(fctx); err != nil {
			l.s.log.Warn("lookup log: records still buffered at shutdown are lost", zap.Error(err))
		}
		cl.Close()
	}, nil
}

// logRecord is a pooled record with its value buffer: n entries, one per
// line.
type logRecord struct {
	rec kgo.Record
	buf []byte
	n   int
}

var logRecordPool = sync.Pool{New: func() any { return &logRecord{buf: make([]byte, 0, logBatchBytes+4<<10)} }}

// flushBatch produces the batch being filled, if any (the linger timer).
func (l *lookupLogger) flushBatch() {
	l.mu.Lock()
	lr := l.cur
	l.cur = nil
	l.mu.Unlock()
	if cl := l.cl.Load(); lr != nil && cl != nil {
		l.produce(cl, lr)
	}
}

// produce sends lr's entries as one record, or drops them (counted) when
// Options.LookupLogBuffer entries already wait for the broker.
func (l *lookupLogger) produce(cl *kgo.Client, lr *logRecord) {
	n := int64(lr.n)
	if l.buffered.Add(n) > int64(l.s.o.LookupLogBuffer) {
		l.buffered.Add(-n)
		l.dropped.Add(float64(n))
		l.release(lr)
		return
	}
	lr.rec = kgo.Record{Value: lr.buf, Context: context.Background()}
	cl.TryProduce(context.Background(), &lr.rec, l.promise)
}

func (l *lookupLogger) release(lr *logRecord) {
	if cap(lr.buf) <= 2*logBatchBytes {
		lr.rec = kgo.Record{}
		lr.buf, lr.n = lr.buf[:0], 0
		logRecordPool.Put(lr)
	}
}

// logLookups produces the sampled keys of a. It must not be called after a
// is released.
func (s *Service) logLookups(a *lookupAnswer) {
	l := &s.llog
	if l.sample == 0 {
		return
	}
	cl := l.cl.Load()
	if cl == nil {
		return
	}
	// Feature ids in sorted order, each once: a request may name a feature twice
	// (by name and by name@version).
	var idx [32]int
	order := idx[:0]
	for j, f := range a.feats {
		dup := false
		for _, k := range order {
			if a.feats[k].def.ID == f.def.ID {
				dup = true
				break
			}
		}
		if !dup {
			order = append(order, j)
		}
	}
	for x := 1; x < len(order); x++ { // insertion sort: few features
		for y := x; y > 0 && a.feats[order[y]].def.ID < a.feats[order[y-1]].def.ID; y-- {
			order[y], order[y-1] = order[y-1], order[y]
		}
	}
	at := a.asOf.UnixMilli()
	n := len(a.feats)
	var full []*logRecord
	l.mu.Lock()
	for i, key := range a.keys {
		if l.sample < 1 && rand.Float64() >= l.sample {
			continue
		}
		lr := l.cur
		if lr != nil && len(lr.buf) >= logBatchBytes {
			full = append(full, lr)
			lr = nil
		}
		if lr == nil {
			lr = logRecordPool.Get().(*logRecord)
			l.cur = lr
			l.timer.Reset(logBatchLinger)
		}
		start := len(lr.buf) // of this entry's separating newline, if any
		b := lr.buf
		if len(b) > 0 {
			b = append(b, '\n')
		}
		b = lookuplog.AppendStart(b, a.info.name, key, at, a.consumer, a.service, s.replicaID, a.request)
		vals := a.vals[i*n : (i+1)*n]
		var count [logSections]int // features of each logSection
		for _, j := range order {
			count[logSectionOf(a.feats[j].def)]++
		}
		for sec := logNumbers; sec < logNone; sec++ {
			if sec != logNumbers && count[sec] == 0 { // the features object is always written
				continue
			}
			b = appendSectionStart(b, sec)
			k := 0
			for _, j := range order {
				if logSectionOf(a.feats[j].def) == sec {
					b = appendLogged(b, sec, k, a.feats[j].def.ID, &vals[j])
					k++
				}
			}
		}
		lr.buf = lookuplog.AppendEnd(b)
		if start > 0 && len(lr.buf)-start > logBatchBytes {
			// A huge entry (long lists) goes alone, so that Kafka's refusal
			// of a record over its message size loses no other entry.
			alone := logRecordPool.Get().(*logRecord)
			alone.buf, alone.n = append(alone.buf[:0], lr.buf[start+1:]...), 1
			lr.buf = lr.buf[:start]
			full = append(full, alone)
			continue
		}
		lr.n++
	}
	if lr := l.cur; lr != nil && len(lr.buf) >= logBatchBytes {
		full = append(full, lr)
		l.cur = nil
	}
	l.mu.Unlock()
	for _, lr := range full {
		l.produce(cl, lr)
	}
}

// logSection is the part of a lookup-log entry a feature's value goes in.
type logSection uint8

const (
	logNumbers           logSection = iota // "features"
	logLists                               // "lists": first_k, last_k of numbers
	logStrings                             // "strings": last, first of a string field
	logStringLists                         // "string_lists": first_k, last_k of a string field
	logBuckets                             // "buckets": bucketed features of numbers
	logBucketStrings                       // "bucket_strings": bucketed last, first of a string field
	logTops                                // "tops": top_k, its JSON text and error
	logBucketLists                         // "bucket_lists": bucketed first_k, last_k of numbers
	logBucketStringLists                   // "bucket_string_lists": bucketed first_k, last_k of a string field
	logBucketTops                          // "bucket_tops": bucketed top_k, each bucket's JSON text and error
	// logNone: not logged (no feature is today; it ends the section loop).
	logNone
	logSections // the number of sections
)

func logSectionOf(f *config.Feature) logSection {
	str := f.OutputType() == aggregations.TypeString
	switch {
	case f.Bucket != "" && f.Aggregation == aggregations.TopK:
		return logBucketTops
	case f.Bucket != "" && str && f.Aggregation.List():
		return logBucketStringLists
	case f.Bucket != "" && f.Aggregation.List():
		return logBucketLists
	case f.Bucket != "" && str:
		return logBucketStrings
	case f.Bucket != "":
		return logBuckets
	case f.Derived == nil && f.Aggregation == aggregations.TopK:
		return logTops
	case str && f.Aggregation.List():
		return logStringLists
	case str:
		return logStrings
	case f.Aggregation.List():
		return logLists
	}
	return logNumbers
}

func (l *lookupLogger) promise(r *kgo.Record, err error) {
	// Every record of this client is the rec field, the first, of a pooled
	// logRecord: recover it.
	lr := (*logRecord)(unsafe.Pointer(r))
	n := float64(lr.n)
	l.buffered.Add(-int64(lr.n))
	switch {
	case err == nil:
		l.sent.Add(n)
	case errors.Is(err, kgo.ErrMaxBuffered):
		l.dropped.Add(n)
	default:
		l.failed.Add(n)
		if now := time.Now().UnixNano(); now-l.lastErrLog.Load() > int64(10*time.Second) {
			l.lastErrLog.Store(now)
			l.s.log.Warn("lookup log: producing a record failed (counted in featurepipe_lookup_log_records_total{result=\"error\"}; logged at most every 10s)", zap.Error(err))
		}
	}
	l.release(lr)
}

// appendSectionStart opens section sec of a lookup-log entry after the
// previous one (the features object is opened by lookuplog.AppendStart).
func appendSectionStart(b []byte, sec logSection) []byte {
	switch sec {
	case logLists:
		return lookuplog.AppendListsStart(b)
	case logStrings:
		return lookuplog.AppendStringsStart(b)
	case logStringLists:
		return lookuplog.AppendStringListsStart(b)
	case logBuckets:
		return lookuplog.AppendBucketsStart(b)
	case logBucketStrings:
		return lookuplog.AppendBucketStringsStart(b)
	case logTops:
		return lookuplog.AppendTopsStart(b)
	case logBucketLists:
		return lookuplog.AppendBucketListsStart(b)
	case logBucketStringLists:
		return lookuplog.AppendBucketStringListsStart(b)
	case logBucketTops:
		return lookuplog.AppendBucketTopsStart(b)
	}
	return b
}

// appendLogged appends the k-th value (from 0) of section sec: feature id
// served v.
func appendLogged(b []byte, sec logSection, k int, id string, v *value) []byte {
	switch sec {
	case logLists:
		return lookuplog.AppendList(b, k, id, v.list, v.hasV)
	case logStrings:
		return lookuplog.AppendString(b, k, id, v.str, v.hasV)
	case logStringLists:
		return lookuplog.AppendStringList(b, k, id, v.strs, v.hasV)
	case logBuckets:
		if !v.hasV {
			return lookuplog.AppendBucketMapNull(b, k, id)
		}
		b = lookuplog.AppendBucketMapStart(b, k, id)
		for e := range v.buckets {
			b = lookuplog.AppendBucket(b, e, v.buckets[e].key, v.buckets[e].val.v, v.buckets[e].val.hasV)
		}
		return lookuplog.AppendBucketMapEnd(b)
	case logBucketStrings:
		if !v.hasV {
			return lookuplog.AppendBucketMapNull(b, k, id)
		}
		b = lookuplog.AppendBucketMapStart(b, k, id)
		for e := range v.buckets {
			b = lookuplog.AppendBucketString(b, e, v.buckets[e].key, v.buckets[e].val.str, v.buckets[e].val.hasV)
		}
		return lookuplog.AppendBucketMapEnd(b)
	case logTops:
		return lookuplog.AppendTop(b, k, id, appendTop(nil, v.top, v.typ), v.topErr, v.hasV && v.top != nil)
	case logBucketLists, logBucketStringLists, logBucketTops:
		if !v.hasV {
			return lookuplog.AppendBucketMapNull(b, k, id)
		}
		b = lookuplog.AppendBucketMapStart(b, k, id)
		for e := range v.buckets {
			bv := &v.buckets[e].val
			switch sec {
			case logBucketLists:
				b = lookuplog.AppendBucketList(b, e, v.buckets[e].key, bv.list, bv.hasV)
			case logBucketStringLists:
				b = lookuplog.AppendBucketStringList(b, e, v.buckets[e].key, bv.strs, bv.hasV)
			default:
				b = lookuplog.AppendBucketTop(b, e, v.buckets[e].key, appendTop(nil, bv.top, bv.typ), bv.topErr, bv.hasV)
			}
		}
		return lookuplog.AppendBucketMapEnd(b)
	}
	return lookuplog.AppendFeature(b, k, id, v.v, v.hasV)
}
