package backfill

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Shard selects one shard of a sharded backfill (Options.Shard): shard
// Index of Count. The zero value (Count 0) is the single-process run.
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// ErrNotCanonical is wrapped by the error of a sharded Run that read a
// record of a spine entity owned by another shard: the record is outside
// its key's canonical partition (its producer does not partition by
// murmur2 of the key, as Kafka's Java client and franz-go do by default),
// so the owning shard did not read it. Run such a backfill without
// Options.Shard.
var ErrNotCanonical = errors.New("record outside its key's canonical partition")

// ParseShard parses "i/N" (0 <= i < N); "" is the zero Shard (not sharded).
func ParseShard(s string) (Shard, error) {
	if s == "" {
		return Shard{}, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(a))
	n, err2 := strconv.Atoi(strings.TrimSpace(b))
	switch {
	case !ok || err1 != nil || err2 != nil:
		return Shard{}, fmt.Errorf("%w: shard %q: want i/N, e.g. 0/4 (shard index i of N shards, 0 <= i < N)", ErrInvalidOptions, s)
	case n < 1:
		return Shard{}, fmt.Errorf("%w: shard %q: the number of shards N must be at least 1", ErrInvalidOptions, s)
	case i < 0 || i >= n:
		return Shard{}, fmt.Errorf("%w: shard %q: the shard index must be in 0..%d (0 <= i < N)", ErrInvalidOptions, s, n-1)
	}
	return Shard{Index: i, Count: n}, nil
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Sharded tells whether s selects a shard (Count > 0).
func (s Shard) Sharded() bool { return s.Count > 0 }

// PartFile is the name of shard s's Parquet file in the dataset directory,
// e.g. part-00003-of-00008.parquet.
func (s Shard) PartFile() string {
	return fmt.Sprintf("part-%05d-of-%05d.parquet", s.Index, s.Count)
}

// shardManifestFile is the name of shard s's manifest in the dataset
// directory's shardDir.
func (s Shard) shardManifestFile() string {
	return fmt.Sprintf("part-%05d-of-%05d.json", s.Index, s.Count)
}

const (
	// shardDir is the folder of the dataset directory holding the shards'
	// manifests and the merge claim (readers of *.parquet ignore it).
	shardDir = "_shards"
	// mergeClaim is the file whose exclusive creation makes one shard the
	// one that merges the manifests and registers the dataset.
	mergeClaim = "merge.claim"
)

// partitioner is the canonical partitioner: murmur2 of the key masked to 31
// bits modulo the partition count, as Kafka's Java client and franz-go's
// default (pipeline/worker/canonical.go checks records against the same).
type partitioner struct {
	p   kgo.TopicPartitioner
	rec kgo.Record
}

func newPartitioner() *partitioner {
	return &partitioner{p: kgo.StickyKeyPartitioner(nil).ForTopic("")}
}

// partition returns key's canonical partition among n.
func (c *partitioner) partition(key string, n int) int {
	c.rec.Key = []byte(key)
	return c.p.Partition(&c.rec, n)
}

// shardPlan is how a sharded run splits the work (see the package doc,
// "Shards"): the rows it owns and, per source, whether it reads only its
// partitions.
type shardPlan struct {
	refPartitions int // P: a row's key k belongs to shard partition(k, P) mod N
	owned         []int
	// foreign are the spine's keys owned by other shards: a record of one in
	// a partition this shard reads is an ErrNotCanonical.
	foreign map[string]int // key -> owning shard
}

// partitionSharded tells whether source s is read by partition (each shard
// its partitions p with p mod N == i) rather than in full: its Kafka key is
// the entity key (not a re-keyed source) and it has P partitions.
func partitionSharded(s *sourceReplay, refPartitions int) bool {
	return slices.Equal(s.plan.KeyFields, s.plan.EntityKeys) && len(s.ranges) == refPartitions
}

// planShard decides, after the sources' ranges are listed, which of the
// spine rows (keys) shard sh owns, and restricts every partition-sharded
// source to the shard's partitions. P is the partition count of the first
// source (by topic name) that is not re-keyed; when every source is
// re-keyed, P = N.
func planShard(sh Shard, srcs []*sourceReplay, keys []string) *shardPlan {
	ref := 0
	byTopic := slices.Clone(srcs)
	sort.Slice(byTopic, func(i, j int) bool { return byTopic[i].plan.Source.Topic < byTopic[j].plan.Source.Topic })
	for _, s := range byTopic {
		if slices.Equal(s.plan.KeyFields, s.plan.EntityKeys) {
			ref = len(s.ranges)
			break
		}
	}
	if ref == 0 {
		ref = sh.Count
	}
	sp := &shardPlan{refPartitions: ref, foreign: map[string]int{}}
	part := newPartitioner()
	owner := map[string]int{}
	for i, k := range keys {
		o, ok := owner[k]
		if !ok {
			o = part.partition(k, ref) % sh.Count
			owner[k] = o
		}
		if o == sh.Index {
			sp.owned = append(sp.owned, i)
		} else {
			sp.foreign[k] = o
		}
	}
	for _, s := range srcs {
		if !partitionSharded(s, ref) {
			continue // re-keyed or another partition count: read in full, keep the shard's keys
		}
		s.foreign = sp.foreign
		var ranges []OffsetRange
		var starts []int64
		for i, r := range s.ranges {
			if int(r.Partition)%sh.Count == sh.Index {
				ranges, starts = append(ranges, r), append(starts, s.logStarts[i])
			}
		}
		s.ranges, s.logStarts, s.byPart = ranges, starts, make([]partEvents, len(ranges))
	}
	return sp
}
