package loadgen

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadResponseFraming(t *testing.T) {
	const next = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	for _, tc := range []struct {
		name    string
		in      string
		status  int
		keep    bool
		wantErr bool
	}{
		{name: "content-length body is consumed", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200, keep: true},
		{name: "header names are case-insensitive", in: "HTTP/1.1 404 Not Found\r\ncontent-LENGTH: 2\r\n\r\nno", status: 404, keep: true},
		{name: "chunked body with trailer is consumed", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n", status: 200, keep: true},
		{name: "connection close ends keep-alive", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", status: 200, keep: false},
		{name: "HTTP/1.0 is not kept alive by default", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, keep: false},
		{name: "HTTP/1.0 keep-alive is honored", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", status: 200, keep: true},
		{name: "interim 100 response is skipped", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", status: 201, keep: true},
		{name: "no length: body runs to the end of the connection", in: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, keep: false},
		{name: "204 has no body", in: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, keep: true},
		{name: "garbage status line is an error", in: "HTTP/2 200\r\n\r\n", wantErr: true},
		{name: "non-numeric status is an error", in: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: true},
		{name: "truncated body is an error", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", wantErr: true},
		{name: "bad content-length is an error", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if tc.keep {
				in += next // the next response must start exactly after this one
			}
			br := bufio.NewReader(strings.NewReader(in))
			status, keep, err := readResponse(br)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("status %d, want an error", status)
				}
				return
			}
			if err != nil || status != tc.status || keep != tc.keep {
				t.Fatalf("status %d keep %v err %v, want %d %v", status, keep, err, tc.status, tc.keep)
			}
			if tc.keep {
				if s, _, err := readResponse(br); err != nil || s != 200 {
					t.Fatalf("the following response: status %d err %v; the body was not consumed exactly", s, err)
				}
			}
		})
	}
}

func TestWireRequestIsValidHTTP(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := new(strings.Builder)
		_, _ = bufio.NewReader(r.Body).WriteTo(b)
		got <- r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type") + " " + b.String()
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	req := WireRequest("POST", host, "/v1/lookup", http.Header{"Content-Type": {"application/json"}}, []byte(`{"a":1}`))
	res, err := Run(context.Background(), Options{Rate: 100, Duration: 10 * time.Millisecond, MaxInFlight: 1, Addr: host,
		Wire: func(uint64) []byte { return req }})
	if err != nil || res.OK != 1 {
		t.Fatalf("ok %d err %v (first error %s)", res.OK, err, res.FirstError)
	}
	if s := <-got; s != `POST /v1/lookup application/json {"a":1}` {
		t.Errorf("server saw %q", s)
	}
}

// A server that closes every connection after its answer: the wire client
// re-dials and every request still succeeds.
func TestWireReconnectsAfterConnectionClose(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	req := WireRequest("GET", host, "/", nil, nil)
	res, err := Run(context.Background(), Options{Rate: 500, Duration: 100 * time.Millisecond, MaxInFlight: 2, Addr: host,
		Wire: func(uint64) []byte { return req }})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 50 || res.Errors != 0 {
		t.Errorf("ok %d errors %d (first: %s), want 50 ok", res.OK, res.Errors, res.FirstError)
	}
}

// A server that closes connections idle for 20ms, with requests 50ms apart:
// each request after the first is written to a connection the server has
// closed. Like net/http, the wire client retries such a request once on a
// new connection, and it succeeds.
func TestWireRetriesOnConnectionClosedWhileIdle(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.IdleTimeout = 20 * time.Millisecond
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	req := WireRequest("GET", host, "/", nil, nil)
	res, err := Run(context.Background(), Options{Rate: 20, Duration: 500 * time.Millisecond, MaxInFlight: 1, Addr: host,
		Wire: func(uint64) []byte { return req }})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 10 || res.Errors != 0 {
		t.Errorf("ok %d errors %d (first: %s), want 10 ok", res.OK, res.Errors, res.FirstError)
	}
	// The server did close idle connections: otherwise this tests nothing.
	if n := conns.Load(); n < 5 {
		t.Errorf("%d connections for 10 requests, want most requests on a new one", n)
	}
}

func TestWireOptionsAreValidated(t *testing.T) {
	wire := func(uint64) []byte { return nil }
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"wire needs an address", Options{Rate: 1, Duration: time.Second, Wire: wire}},
		{"request and wire exclude each other", Options{Rate: 1, Duration: time.Second, Wire: wire, Addr: "x:1", Request: get("http://x:1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tc.o); !errors.Is(err, ErrOptions) {
				t.Errorf("error %v, want ErrOptions", err)
			}
		})
	}
}
