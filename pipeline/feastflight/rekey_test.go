package feastflight_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/feastflight"
)

// TestFlightRekeyedView: a re-keyed feature is read through the view
// feast-repo generates for it (<source>_<entity>), and a composite entity
// needs one entity-dataframe column per join key.
func TestFlightRekeyedView(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
  - {name: user_merchant, keys: [user_id, merchant_id]}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts, entity: user}
features:
  - {name: txn_count_7d, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, owner: o, description: d}
  - {name: pair_sum_7d, version: 1, entity: user_merchant, source: transactions, aggregation: sum, field: amount, window: 7d, owner: o, description: d}
`, nil)
	s, err := feastflight.New(feastflight.Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	cl, err := flight.NewClientWithMiddleware(ln.Addr().String(), nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		cancel()
		<-done
	})
	rows := entityTable(t, map[string]any{"user_id": "u1", "event_timestamp": time.Now()})
	for _, tc := range []struct{ ref, msg string }{
		{"transactions_user_merchant:pair_sum_7d", `the entity dataframe has no "merchant_id" column: entity user_merchant's join key`},
		{"transactions:pair_sum_7d", `feature view "transactions" has no feature "pair_sum_7d": its features are txn_count_7d`},
		{"transactions_user_merchant:txn_count_7d", `feature view "transactions_user_merchant" has no feature "txn_count_7d": its features are pair_sum_7d`},
	} {
		err := exchange(t, cl, historical(tc.ref), rows)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want InvalidArgument with %q", tc.ref, err, tc.msg)
		}
	}
}
