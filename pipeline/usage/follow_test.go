package usage_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/usage"
)

var followFeatures = []string{"login_count_lifetime@1", "txn_amount_avg_30d@1", "txn_amount_last@1", "txn_amount_max_7d@1", "txn_amount_min_7d@1", "txn_amount_sum_1h@1", "txn_count_7d@1"}

// followRecords are n lookup-log records as the lookup service writes them
// for one-key requests of followFeatures.
func followRecords(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	at := time.Now().UnixMilli()
	out := make([][]byte, n)
	for i := range out {
		key := fmt.Sprintf("u%04d", 1+rng.IntN(5000))
		b := lookuplog.AppendStart(nil, "user", key, at+int64(i/20), "anonymous", "", "3f9a0c1b2d4e", uint64(i+1))
		for j, id := range followFeatures {
			b = lookuplog.AppendFeature(b, j, id, rng.ExpFloat64()*50, j != 5)
		}
		out[i] = lookuplog.AppendEnd(b)
	}
	return out
}

// BenchmarkFollowPerRecord is what the web catalog's follower of the lookup
// log (cmd/featurepipe withUI) does per record, Kafka aside: decode it into
// a reused Record, count it in usage.Live and in monitor.ServedLive. The
// records are the wrk benchmark's (README "Lookup handler"): one key of
// 5,000, the 7 features, one of them null, a new request each, all in the
// current 10-minute sub-window (so ServedLive samples past the first
// 8,192 values of each feature).
func BenchmarkFollowPerRecord(b *testing.B) {
	recs := followRecords(1 << 17)
	live := usage.NewLive()
	served := monitor.NewServedLive(monitor.ServedLiveOptions{})
	var dec lookuplog.Decoder
	var r lookuplog.Record
	i := 0
	for b.Loop() {
		if err := dec.Decode(recs[i%len(recs)], &r); err != nil {
			b.Fatal(err)
		}
		live.AddRecord(&r)
		served.AddRecord(&r)
		i++
	}
}
