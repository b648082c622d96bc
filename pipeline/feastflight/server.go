// Package feastflight serves Feast's remote offline store protocol over
// Arrow Flight, so that the Feast SDK's get_historical_features (with
// offline_store: {type: remote, host, port}) is answered by featurepipe's
// backfill engine, with exactly the semantics of `featurepipe backfill`:
// each entity row's event_timestamp is T, the values are the features as of
// T (events with ts < T), NOT_FOUND rows are null.
//
// The protocol, as Feast's own server (feast/offline_server.py) speaks it:
// the client sends a JSON command ({"api": "get_historical_features",
// "feature_view_names", "feature_refs", "full_feature_names", "project",
// "name_aliases", optional "start_date"/"end_date"}) as the command of a
// FlightDescriptor, with the entity dataframe as an Arrow table, and reads
// the entity dataframe back with one column per feature.
//
//   - DoExchange (Feast SDK 0.64 and later): one stream, the table up and
//     the answer down.
//   - DoPut, then GetFlightInfo and DoGet with the returned ticket (Feast SDK
//     0.63 and earlier): DoPut keeps the table in memory under the command
//     until DoGet takes it (at most MaxPending commands; the oldest is
//     dropped beyond).
//   - DoPut with api validate_data_source (feast apply) is accepted: the
//     generated feature views' FileSources are placeholders.
//
// Feature views are featurepipe sources (as featurepipe feast-repo writes
// them) and a feature reference view:name is the feature's default version.
// A FeatureService (store.get_feature_service) needs nothing more: the SDK
// sends its features as view:name references of its projections.
// Errors (unknown feature view or feature, no timestamp or join-key column,
// unsupported column types) are Flight errors with code InvalidArgument and
// a message saying what to change.
package feastflight

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// Options configure a Server.
type Options struct {
	// Brokers and Config are required: the backfill engine replays the
	// source topics of the feature file.
	Brokers []string
	Config  *config.File
	// Snapshots, Limits: as backfill.Options (featurepipe serve passes its
	// --snapshots store). Default: replay only, the events package limits.
	Snapshots *snapshot.Store
	Limits    events.Limits
	// Log receives one line per answered or failed request. Default: none.
	Log *zap.Logger
	// MaxPending bounds the entity tables DoPut keeps for a later DoGet
	// (SDKs up to 0.63). Default 16.
	MaxPending int
	// MaxMessageBytes bounds one received gRPC message (an Arrow record
	// batch of the entity dataframe). Default 256 MiB; gRPC's own default,
	// 4 MiB, is about 100k entity rows.
	MaxMessageBytes int
}

// Server is the Flight service. Create with New, run with Serve.
type Server struct {
	flight.BaseFlightServer
	o   Options
	log *zap.Logger
	mem memory.Allocator

	mu      sync.Mutex
	pending map[string]*list.Element // command -> element of order (value: *put)
	order   *list.List
}

// put is an entity table a DoPut left for DoGet.
type put struct {
	cmd  string
	recs []arrow.RecordBatch
}

// New validates o.
func New(o Options) (*Server, error) {
	if len(o.Brokers) == 0 || o.Config == nil {
		return nil, errors.New("feastflight: Brokers and Config are required")
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 16
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 256 << 20
	}
	return &Server{o: o, log: o.Log, mem: memory.NewGoAllocator(), pending: map[string]*list.Element{}, order: list.New()}, nil
}

// Serve answers Flight requests on ln until ctx ends, then stops gracefully
// (in-flight requests finish).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := flight.NewServerWithMiddleware(nil, grpc.MaxRecvMsgSize(s.o.MaxMessageBytes))
	srv.RegisterFlightService(s)
	srv.InitListener(ln)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.Shutdown()
		case <-done:
		}
	}()
	err := srv.Serve()
	close(done)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// command is the JSON command of a Feast request; fields it does not list
// are ignored.
type command struct {
	API              string   `json:"api"`
	FeatureViewNames []string `json:"feature_view_names"`
	FeatureRefs      []string `json:"feature_refs"`
	FullFeatureNames bool     `json:"full_feature_names"`
	EntityDFSQL      *string  `json:"entity_df_sql"`
}

const (
	apiHistorical = "get_historical_features"
	apiValidate   = "validate_data_source"
)

func parseCommand(desc *flight.FlightDescriptor) (*command, error) {
	if desc == nil || desc.Type != flight.DescriptorCMD {
		return nil, invalid("expected a Flight command descriptor holding Feast's JSON command")
	}
	var c command
	if err := json.Unmarshal(desc.Cmd, &c); err != nil {
		return nil, invalid("the Flight command is not Feast's JSON command: %v", err)
	}
	if c.API == "" {
		return nil, invalid(`the Feast command has no "api"`)
	}
	return &c, nil
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "featurepipe: "+format, args...)
}

// readAll reads the record batches of a stream (retained; the caller
// releases them) and its descriptor.
func readAll(r *flight.Reader) ([]arrow.RecordBatch, error) {
	var recs []arrow.RecordBatch
	for r.Next() {
		rec := r.RecordBatch()
		rec.Retain()
		recs = append(recs, rec)
	}
	if err := r.Err(); err != nil {
		release(recs)
		return nil, status.Errorf(codes.InvalidArgument, "featurepipe: read the entity table: %v", err)
	}
	return recs, nil
}

func release(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

// DoExchange answers a read command in one stream (Feast SDK 0.64+).
func (s *Server) DoExchange(stream flight.FlightService_DoExchangeServer) error {
	r, err := flight.NewRecordReader(stream, ipc.WithAllocator(s.mem))
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "featurepipe: read the entity table: %v", err)
	}
	defer r.Release()
	cmd, err := parseCommand(r.LatestFlightDescriptor())
	if err != nil {
		return err
	}
	if cmd.API != apiHistorical {
		return status.Errorf(codes.Unimplemented, "featurepipe: Feast api %q is not served; featurepipe serves get_historical_features", cmd.API)
	}
	recs, err := readAll(r)
	if err != nil {
		return err
	}
	defer release(recs)
	return s.answer(stream.Context(), cmd, r.Schema(), recs, stream)
}

// DoPut receives a command and its table (Feast SDK up to 0.63, and feast
// apply's validate_data_source).
func (s *Server) DoPut(stream flight.FlightService_DoPutServer) error {
	r, err := flight.NewRecordReader(stream, ipc.WithAllocator(s.mem))
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "featurepipe: read the uploaded table: %v", err)
	}
	defer r.Release()
	desc := r.LatestFlightDescriptor()
	cmd, err := parseCommand(desc)
	if err != nil {
		return err
	}
	recs, err := readAll(r)
	if err != nil {
		return err
	}
	switch cmd.API {
	case apiValidate:
		release(recs)
		return nil // the generated FileSources are placeholders: nothing to check
	case apiHistorical:
		s.keep(string(desc.Cmd), recs, r.Schema())
		return nil
	}
	release(recs)
	return status.Errorf(codes.Unimplemented, "featurepipe: Feast api %q is not served; featurepipe serves get_historical_features", cmd.API)
}

// keep stores an uploaded entity table for DoGet, dropping the oldest
// beyond MaxPending.
func (s *Server) keep(cmd string, recs []arrow.RecordBatch, schema *arrow.Schema) {
	if len(recs) == 0 { // keep the schema: an empty entity table is valid
		recs = []arrow.RecordBatch{emptyBatch(schema, s.mem)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.pending[cmd]; ok {
		release(e.Value.(*put).recs)
		s.order.Remove(e)
	}
	s.pending[cmd] = s.order.PushBack(&put{cmd: cmd, recs: recs})
	for s.order.Len() > s.o.MaxPending {
		old := s.order.Remove(s.order.Front()).(*put)
		delete(s.pending, old.cmd)
		release(old.recs)
		s.log.Warn("Feast offline request dropped before its DoGet: too many pending", zap.Int("max_pending", s.o.MaxPending))
	}
}

// take removes and returns the table kept for cmd.
func (s *Server) take(cmd string) (*put, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.pending[cmd]
	if !ok {
		return nil, false
	}
	delete(s.pending, cmd)
	return s.order.Remove(e).(*put), true
}

// GetFlightInfo names the ticket of a command DoPut received: the command
// itself, redeemed by DoGet on this server.
func (s *Server) GetFlightInfo(_ context.Context, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	if desc == nil || desc.Type != flight.DescriptorCMD {
		return nil, invalid("expected a Flight command descriptor holding Feast's JSON command")
	}
	s.mu.Lock()
	_, ok := s.pending[string(desc.Cmd)]
	s.mu.Unlock()
	if !ok {
		return nil, status.Error(codes.NotFound, "featurepipe: no entity table was uploaded (DoPut) for this command, or it was already retrieved")
	}
	return &flight.FlightInfo{
		Schema:           flight.SerializeSchema(arrow.NewSchema(nil, nil), s.mem),
		FlightDescriptor: desc,
		Endpoint:         []*flight.FlightEndpoint{{Ticket: &flight.Ticket{Ticket: desc.Cmd}}},
		TotalRecords:     -1,
		TotalBytes:       -1,
	}, nil
}

// DoGet answers the command a ticket names with the table DoPut kept.
func (s *Server) DoGet(t *flight.Ticket, stream flight.FlightService_DoGetServer) error {
	p, ok := s.take(string(t.GetTicket()))
	if !ok {
		return status.Error(codes.NotFound, "featurepipe: unknown or already used ticket: upload the entity table (DoPut) again")
	}
	defer release(p.recs)
	cmd, err := parseCommand(&flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(p.cmd)})
	if err != nil {
		return err
	}
	return s.answer(stream.Context(), cmd, p.recs[0].Schema(), p.recs, stream)
}
