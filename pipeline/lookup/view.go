package lookup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// entityView is the decoded view value of one entity: every feature the
// feature log carries for it, each with the time of its latest tile update.
type entityView struct {
	ids     []string
	updated []int64 // ms
	series  []aggregations.Series
}

func (e *entityView) reset() {
	e.ids = e.ids[:0]
	e.updated = e.updated[:0]
	e.series = e.series[:0]
}

func (e *entityView) index(id string) int {
	for i, x := range e.ids {
		if x == id {
			return i
		}
	}
	return -1
}

func (e *entityView) add(id string) int {
	e.ids = append(e.ids, id)
	e.updated = append(e.updated, 0)
	if len(e.series) < cap(e.series) {
		e.series = e.series[:len(e.series)+1]
		e.series[len(e.series)-1] = aggregations.Series{Tiles: e.series[len(e.series)-1].Tiles[:0]}
	} else {
		e.series = append(e.series, aggregations.Series{})
	}
	return len(e.ids) - 1
}

// addBytes is add for an id given as bytes: when e is reused and its
// previous decode had the same id at this position (the common case: every
// view of an entity type lists the same features), the old string is kept
// and nothing is allocated.
func (e *entityView) addBytes(id []byte) int {
	if n := len(e.ids); n < cap(e.ids) {
		if old := e.ids[:n+1][n]; old == string(id) {
			return e.add(old)
		}
	}
	return e.add(string(id))
}

// viewPool holds entityViews to decode Pebble values into on a cache miss.
var viewPool = sync.Pool{New: func() any { return new(entityView) }}

// encode layout: uvarint(n), n × (uvarint len, id, varint updated, series).
func (e *entityView) encode(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(e.ids)))
	for i, id := range e.ids {
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = binary.AppendVarint(dst, e.updated[i])
		dst = aggregations.AppendSeries(dst, &e.series[i])
	}
	return dst
}

func (e *entityView) decode(src []byte) error {
	e.reset()
	n, w := binary.Uvarint(src)
	if w <= 0 {
		return aggregations.ErrCorrupt
	}
	src = src[w:]
	for j := uint64(0); j < n; j++ {
		l, w := binary.Uvarint(src)
		if w <= 0 || uint64(len(src)-w) < l {
			return aggregations.ErrCorrupt
		}
		i := e.addBytes(src[w : w+int(l)])
		src = src[w+int(l):]
		u, w2 := binary.Varint(src)
		if w2 <= 0 {
			return aggregations.ErrCorrupt
		}
		e.updated[i] = u
		var err error
		if src, err = aggregations.DecodeSeries(src[w2:], &e.series[i]); err != nil {
			return err
		}
	}
	return nil
}

// absent is the cached value of an entity the feature log never mentioned.
var absent = []byte{}

var valPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// view parses the view of one entity into v, from the cache or from Pebble
// (then caching it). found is false for an entity the feature log never
// mentioned; v is then empty.
func (s *Service) view(entity, key string, v *lookupView, kbuf []byte) (found bool, err error) {
	kbuf = keys.View(kbuf[:0], entity, key)
	val, gen := s.cache.get(kbuf)
	if val == nil {
		if val, err = s.readIndexed(kbuf); err != nil {
			return false, fmt.Errorf("view of %s %q: %w", entity, key, err)
		}
		s.cache.put(kbuf, gen, val)
	}
	if len(val) == 0 {
		v.reset()
		return false, nil
	}
	if err := v.parse(val); err != nil {
		return false, fmt.Errorf("view of %s %q: %w", entity, key, err)
	}
	return true, nil
}

// readIndexed reads the view key from Pebble and returns it in the cache's
// layout (appendIndexed), or absent.
func (s *Service) readIndexed(kbuf []byte) ([]byte, error) {
	vp := valPool.Get().(*[]byte)
	defer valPool.Put(vp)
	val, ok, err := s.o.Store.Get((*vp)[:0], kbuf)
	if cap(val) <= 1<<20 {
		*vp = val[:0]
	}
	if err != nil || !ok {
		return absent, err
	}
	e := viewPool.Get().(*entityView)
	defer viewPool.Put(e)
	if err := e.decode(val); err != nil {
		return nil, err
	}
	return e.appendIndexed(nil), nil
}

// load reads the view of one entity into e. found is false for an entity the
// feature log never mentioned.
func (s *Service) load(entity, key string, e *entityView, kbuf, vbuf []byte) (found bool, err error) {
	kbuf = keys.View(kbuf[:0], entity, key)
	val, found, err := s.o.Store.Get(vbuf[:0], kbuf)
	if err != nil || !found {
		e.reset()
		return found, err
	}
	if err := e.decode(val); err != nil {
		return false, fmt.Errorf("view of %s %q: %w", entity, key, err)
	}
	return true, nil
}

// consume follows the feature log into the Pebble view until ctx ends.
func (s *Service) consume(ctx context.Context) error {
	topic := s.o.Config.Kafka.FeatureLogTopic
	admin, err := kgo.NewClient(kafka.BaseOpts(s.o.Brokers, s.o.ClientID+"-admin", s.log)...)
	if err != nil {
		return fmt.Errorf("lookup kafka client: %w", err)
	}
	if err := kafka.EnsureTopics(ctx, admin, s.o.Config); err != nil {
		admin.Close()
		return err
	}
	var ends map[int32]int64
	for {
		ends, err = kafka.EndOffsets(ctx, admin, topic)
		if err == nil || ctx.Err() != nil {
			break
		}
		s.log.Warn("waiting for feature log", zap.Error(err))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if ctx.Err() != nil {
		admin.Close()
		return nil
	}
	if s.emptyView(topic, ends) {
		if err := s.coldStart(ctx, admin, ends); err != nil {
			// The feature log holds everything: replay it instead.
			s.log.Warn("cold start from snapshots failed; replaying the feature log", zap.Error(err))
		}
	}
	admin.Close()
	start := make(map[int32]kgo.Offset, len(ends))
	next := make(map[int32]int64, len(ends))
	for p := range ends {
		off, found, err := s.o.Store.GetOffset(keys.ViewLogOffset(topic, p))
		if err != nil {
			return err
		}
		if found {
			start[p] = kgo.NewOffset().At(off).WithEpoch(-1)
			next[p] = off
		} else {
			start[p] = kgo.NewOffset().AtStart()
		}
	}
	s.setCatchUp(ends, next)
	cl, err := kgo.NewClient(append(kafka.BaseOpts(s.o.Brokers, s.o.ClientID, s.log),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxWait(100*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("lookup kafka client: %w", err)
	}
	defer cl.Close()
	s.log.Info("following feature log", zap.String("topic", topic), zap.Int("partitions", len(ends)), zap.Any("end_offsets_at_start", ends))
	cache := make(map[string]*entityView) // the entities one partition's records change
	published := make(map[string][]byte)  // their committed encodings, for the lookup cache
	var kbuf, vbuf []byte
	for {
		fetches := cl.PollRecords(ctx, 50000)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) {
				return nil
			}
			s.log.Warn("feature log fetch error", zap.Int32("partition", fe.Partition), zap.Error(fe.Err))
		}
		var perr error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if perr != nil || len(fp.Records) == 0 {
				return
			}
			clear(cache)
			clear(published)
			b := s.o.Store.NewBatch()
			for _, r := range fp.Records {
				ref, err := keys.ParseFeatureLog(r.Key)
				if err != nil {
					s.log.Warn("skipping malformed feature-log record", zap.Int32("partition", fp.Partition), zap.Int64("offset", r.Offset), zap.Error(err))
					continue
				}
				ck := ref.Entity + "\x00" + ref.EntityKey
				e, ok := cache[ck]
				if !ok {
					e = new(entityView)
					if _, err := s.load(ref.Entity, ref.EntityKey, e, kbuf, vbuf); err != nil {
						perr = err
						b.Close()
						return
					}
					cache[ck] = e
				}
				i := e.index(ref.FeatureID)
				if i < 0 {
					i = e.add(ref.FeatureID)
				}
				if r.Value == nil {
					e.series[i].DeleteTile(ref.Start)
				} else {
					t, _, err := aggregations.DecodeTile(r.Value)
					if err != nil {
						s.log.Warn("skipping undecodable tile", zap.Int32("partition", fp.Partition), zap.Int64("offset", r.Offset), zap.Error(err))
						continue
					}
					e.series[i].SetTile(t)
				}
				if ts := r.Timestamp.UnixMilli(); ts > e.updated[i] {
					e.updated[i] = ts
				}
			}
			for ck, e := range cache {
				entity, key, _ := cutNUL(ck)
				kbuf = keys.View(kbuf[:0], entity, key)
				vbuf = e.encode(vbuf[:0])
				_ = b.Set(kbuf, vbuf, nil)
				published[ck] = e.appendIndexed(nil)
				// Lookups must not hit the old value once Pebble has the
				// new one: see viewCache.
				s.cache.invalidate(kbuf)
			}
			last := fp.Records[len(fp.Records)-1].Offset + 1
			_ = b.Set(keys.ViewLogOffset(topic, fp.Partition), keys.PutU64(last), nil)
			if err := s.o.Store.CommitNoSync(b); err != nil {
				perr = err
				return
			}
			for ck, v := range published {
				entity, key, _ := cutNUL(ck)
				kbuf = keys.View(kbuf[:0], entity, key)
				s.cache.publish(kbuf, v)
			}
			s.m.LogRecords.Add(float64(len(fp.Records)))
			if fp.HighWatermark >= 0 {
				s.m.LogLag.WithLabelValues(strconv.Itoa(int(fp.Partition))).Set(float64(fp.HighWatermark - last))
			}
			s.advance(fp.Partition, last)
		})
		if perr != nil {
			return fmt.Errorf("apply feature log to view: %w", perr)
		}
	}
}

func cutNUL(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// emptyView reports whether the view has never read the feature log.
func (s *Service) emptyView(topic string, ends map[int32]int64) bool {
	for p := range ends {
		if _, found, err := s.o.Store.GetOffset(keys.ViewLogOffset(topic, p)); err != nil || found {
			return false
		}
	}
	return true
}

// setCatchUp records the end offsets the view must reach before it is ready.
func (s *Service) setCatchUp(ends, next map[int32]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behind = make(map[int32]int64)
	for p, end := range ends {
		if next[p] < end {
			s.behind[p] = end
		}
	}
	s.checkReadyLocked()
}

func (s *Service) advance(p int32, next int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if end, ok := s.behind[p]; ok && next >= end {
		delete(s.behind, p)
		s.checkReadyLocked()
	}
}

func (s *Service) checkReadyLocked() {
	if len(s.behind) == 0 && !s.ready.Load() {
		s.ready.Store(true)
		s.m.Ready.Set(1)
		s.log.Info("lookup view caught up with the feature log", zap.Duration("after", time.Since(s.started)))
	}
}
