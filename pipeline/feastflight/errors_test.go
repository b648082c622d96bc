package feastflight_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/feastflight"
)

// startFlight serves a Server for the test feature file (no broker: every
// request here fails before the backfill engine runs) and returns a client.
func startFlight(t *testing.T) flight.Client {
	t.Helper()
	cfg := testkit.WriteConfig(t, featureFile, nil)
	return serveFlight(t, feastflight.Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, MaxPending: 2})
}

// serveFlight serves a Server made with o on a free port and returns a
// client to it; both stop at the end of the test, which fails if Serve
// returned an error.
func serveFlight(t *testing.T, o feastflight.Options) flight.Client {
	t.Helper()
	s, err := feastflight.New(o)
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
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return cl
}

// retrieve asks cl for the historical retrieval of refs at the entity rows
// (keys[i] as user_id, times[i] in epoch milliseconds as event_timestamp)
// and returns the answer's record batches, failing the test on an error.
func retrieve(t *testing.T, cl flight.Client, refs []string, keys []string, times []int64) []arrow.RecordBatch {
	t.Helper()
	mem := memory.NewGoAllocator()
	kb := array.NewStringBuilder(mem)
	kb.AppendValues(keys, nil)
	tb := array.NewTimestampBuilder(mem, &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"})
	for _, T := range times {
		tb.Append(arrow.Timestamp(T))
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "user_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "event_timestamp", Type: tb.Type(), Nullable: true}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{kb.NewArray(), tb.NewArray()}, int64(len(keys)))
	cmd, _ := json.Marshal(historical(refs...))
	stream, err := cl.DoExchange(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w := flight.NewRecordWriter(stream, ipc.WithSchema(schema))
	w.SetFlightDescriptor(&flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: cmd})
	if err := w.Write(rec); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_ = w.Close()
	_ = stream.CloseSend()
	r, err := flight.NewRecordReader(stream)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	var out []arrow.RecordBatch
	for r.Next() {
		b := r.RecordBatch()
		b.Retain()
		out = append(out, b)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// entityTable is a one-row table with the given columns.
func entityTable(t *testing.T, cols map[string]any) arrow.RecordBatch {
	t.Helper()
	mem := memory.NewGoAllocator()
	var fields []arrow.Field
	var arrs []arrow.Array
	for _, name := range []string{"user_id", "event_timestamp", "key", "when"} {
		v, ok := cols[name]
		if !ok {
			continue
		}
		var a arrow.Array
		switch x := v.(type) {
		case string:
			b := array.NewStringBuilder(mem)
			b.Append(x)
			a = b.NewArray()
		case float64:
			b := array.NewFloat64Builder(mem)
			b.Append(x)
			a = b.NewArray()
		case time.Time:
			b := array.NewTimestampBuilder(mem, &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"})
			b.Append(arrow.Timestamp(x.UnixNano()))
			a = b.NewArray()
		default:
			t.Fatalf("column %s: %T", name, v)
		}
		fields = append(fields, arrow.Field{Name: name, Type: a.DataType(), Nullable: true})
		arrs = append(arrs, a)
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), arrs, 1)
}

func historical(refs ...string) map[string]any {
	views := []string{}
	for _, r := range refs {
		views = append(views, strings.SplitN(r, ":", 2)[0])
	}
	return map[string]any{"command_id": "c1", "api": "get_historical_features", "feature_view_names": views,
		"feature_refs": refs, "project": "featurepipe", "full_feature_names": false, "name_aliases": []any{nil}}
}

// exchange sends cmd and rec by DoExchange and returns the error the
// answer carries.
func exchange(t *testing.T, cl flight.Client, cmd map[string]any, rec arrow.RecordBatch) error {
	t.Helper()
	b, _ := json.Marshal(cmd)
	stream, err := cl.DoExchange(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w := flight.NewRecordWriter(stream, ipc.WithSchema(rec.Schema()))
	w.SetFlightDescriptor(&flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: b})
	if err := w.Write(rec); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_ = w.Close()
	_ = stream.CloseSend()
	r, err := flight.NewRecordReader(stream)
	if err != nil {
		return err
	}
	defer r.Release()
	for r.Next() {
	}
	return r.Err()
}

// TestFlightErrorsSayWhatToChange: a request the server cannot answer is a
// Flight error with code InvalidArgument (Unimplemented, NotFound) and a
// message naming the problem.
func TestFlightErrorsSayWhatToChange(t *testing.T) {
	cl := startFlight(t)
	T := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		cmd  map[string]any
		cols map[string]any
		code codes.Code
		msg  string
	}{
		{"unknown feature view", historical("payments:txn_count_7d"), map[string]any{"user_id": "u1", "event_timestamp": T},
			codes.InvalidArgument, `unknown feature view "payments": featurepipe's feature views are its sources with features (transactions, logins)`},
		{"feature of another view", historical("logins:txn_count_7d"), map[string]any{"user_id": "u1", "event_timestamp": T},
			codes.InvalidArgument, `feature view "logins" has no feature "txn_count_7d": its features are login_count_life, login_count_1h`},
		{"unknown feature", historical("transactions:nope"), map[string]any{"user_id": "u1", "event_timestamp": T},
			codes.InvalidArgument, `feature view "transactions" has no feature "nope"`},
		{"missing timestamp column", historical("transactions:txn_count_7d"), map[string]any{"user_id": "u1"},
			codes.InvalidArgument, `the entity dataframe needs an "event_timestamp" column`},
		{"timestamp column of the wrong type", historical("transactions:txn_count_7d"), map[string]any{"user_id": "u1", "event_timestamp": "2026-01-02"},
			codes.InvalidArgument, `entity dataframe column "event_timestamp" is utf8, not a timestamp`},
		{"missing join key column", historical("transactions:txn_count_7d"), map[string]any{"event_timestamp": T, "when": T},
			codes.InvalidArgument, `the entity dataframe has no "user_id" column: entity user's join key`},
		{"join key of the wrong type", historical("transactions:txn_count_7d"), map[string]any{"user_id": 1.5, "event_timestamp": T},
			codes.InvalidArgument, `entity dataframe column "user_id" is float64: join keys must be strings or integers`},
		{"no entity dataframe (Feast's placeholder table)", historical("transactions:txn_count_7d"), map[string]any{"key": "mock_key"},
			codes.InvalidArgument, "no entity dataframe"},
		{"an api featurepipe does not serve", map[string]any{"api": "pull_all_from_table_or_query"}, map[string]any{"key": "mock_key"},
			codes.Unimplemented, `Feast api "pull_all_from_table_or_query" is not served`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := exchange(t, cl, tc.cmd, entityTable(t, tc.cols))
			st, ok := status.FromError(err)
			if !ok || st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v, want code %s with %q", err, tc.code, tc.msg)
			}
		})
	}
}

// TestFlightPutThenGet: the flow of SDKs up to 0.63. GetFlightInfo names a
// ticket only for an uploaded command; DoGet redeems it once, and
// validate_data_source (feast apply) is accepted.
func TestFlightPutThenGet(t *testing.T) {
	cl := startFlight(t)
	ctx := context.Background()
	put := func(cmd map[string]any, rec arrow.RecordBatch) *flight.FlightDescriptor {
		b, _ := json.Marshal(cmd)
		desc := &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: b}
		stream, err := cl.DoPut(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w := flight.NewRecordWriter(stream, ipc.WithSchema(rec.Schema()))
		w.SetFlightDescriptor(desc)
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("DoPut: %v", err)
		}
		return desc
	}
	put(map[string]any{"api": "validate_data_source", "data_source_proto": "name: \"x\""}, entityTable(t, map[string]any{"key": "mock_key"}))

	// A command never uploaded has no flight.
	other, _ := json.Marshal(historical("transactions:txn_count_7d"))
	if _, err := cl.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: other}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetFlightInfo of a command never uploaded: %v, want NotFound", err)
	}
	// An uploaded one answers (here with its error: the feature view is
	// unknown), and its ticket is used up.
	desc := put(historical("payments:x"), entityTable(t, map[string]any{"user_id": "u1", "event_timestamp": time.Now()}))
	info, err := cl.GetFlightInfo(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	get := func() error {
		stream, err := cl.DoGet(ctx, info.Endpoint[0].Ticket)
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	if err := get(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `unknown feature view "payments"`) {
		t.Fatalf("DoGet: %v, want the unknown feature view", err)
	}
	if err := get(); status.Code(err) != codes.NotFound {
		t.Fatalf("second DoGet of a ticket: %v, want NotFound", err)
	}

	// Beyond MaxPending (2 here) uploads waiting for DoGet, the oldest goes.
	var descs []*flight.FlightDescriptor
	for i := 0; i < 3; i++ {
		cmd := historical("transactions:txn_count_7d")
		cmd["command_id"] = fmt.Sprint("c", i)
		descs = append(descs, put(cmd, entityTable(t, map[string]any{"user_id": "u1", "event_timestamp": time.Now()})))
	}
	if _, err := cl.GetFlightInfo(ctx, descs[0]); status.Code(err) != codes.NotFound {
		t.Fatalf("the oldest of 3 uploads with MaxPending 2: %v, want NotFound", err)
	}
	for _, d := range descs[1:] {
		if _, err := cl.GetFlightInfo(ctx, d); err != nil {
			t.Fatalf("a newer upload: %v", err)
		}
	}
}
