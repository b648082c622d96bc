package lookup

import (
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// The records the service writes are byte for byte what the lookuplog
// codec encodes for the entries they decode to: one codec for the topic.
func TestLookupLogRecordsAreTheCodecs(t *testing.T) {
	fx, brokers := logFixture(t, 0)
	if rec := fx.do(t, "POST", "/v1/lookup", `{"entity":"user","keys":["u1","u404","<&>"],"features":["txn_count_7d","txn_amount_avg","txn_amount_avg@2","login_count_1h"]}`); rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	n := 0
	eachLogRecord(t, brokers, fx.cfg.Kafka.LookupLogTopic, 20*time.Second, func(r *kgo.Record) bool {
		for b := range lookuplog.Entries(r.Value) {
			n++
			e, err := lookuplog.Decode(b)
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			again, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(b) {
				t.Errorf("written  %s\nre-encoded %s", b, again)
			}
		}
		return n >= 3
	})
	if n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
}
