// Package httpserve serves a net/http Handler over HTTP/1.1 with
// github.com/valyala/fasthttp's server: featurepipe's handlers stay
// http.Handlers (and are tested as such with net/http/httptest), while the
// connection loop, the request parsing and the response writing are
// fasthttp's.
//
// Why not net/http's server: a lookup replica's answer costs ~30 CPU-µs per
// request on loopback, most of it in the server around the handler. The
// net/http server starts a goroutine per request to watch the connection
// (one more read system call and two wake-ups), sets deadlines per request
// and allocates the request's header map and strings; fasthttp's worker
// loop does none of that. Measured with wrk against a lookup replica with
// default flags (README, "Lookups through fasthttp's server"), the replica's
// CPU per request fell by about a fifth. fasthttp's own adaptor
// (fasthttpadaptor.NewFastHTTPHandler) runs every handler on a goroutine of
// its own so that handlers may stream and hijack, which gave that gain back;
// Handler here calls the handler on the connection's goroutine and buffers
// its response instead.
//
// What differs from net/http's server, by design:
//   - The response is buffered whole and sent with a Content-Length: no
//     streaming, no http.Flusher, no http.Hijacker (no featurepipe handler
//     uses them).
//   - The request body is read whole before the handler runs, up to
//     Options.MaxBodyBytes (larger: 413 before the handler).
//   - The request's context ends when the server shuts down, not when the
//     client goes away.
//   - HTTP/1.x only (net/http's server, as featurepipe ran it on a plain or
//     TLS listener, never negotiated HTTP/2 either).
//   - Errors before a handler runs (a malformed request, a header over
//     Options.MaxHeaderBytes, a body over Options.MaxBodyBytes, a read
//     timeout) are answered as featurepipe's API answers errors,
//     {"error":{"code":...,"message":...}}, with 400, 431, 413 or 408.
//
// Like net/http's server it sniffs a Content-Type the handler did not set
// (http.DetectContentType of the body), ignores header changes after
// WriteHeader, adds a Date header, and gives every request its own
// *http.Request and header map: a handler may keep any string it got from
// the request. Only the body's bytes are the server's, valid until the
// handler returns (reading them through Request.Body copies them).
package httpserve

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/jsonenc"
)

// Options configures Serve. Zero values take the defaults stated.
type Options struct {
	// ReadTimeout bounds reading one request, headers and body, from its
	// first byte. Default 10 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response. Default 10 s.
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection. Default 90 s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's request line and headers; larger
	// requests get 431. It is also the read buffer each open connection
	// holds, idle keep-alive ones included (fasthttp's ReduceMemoryUsage,
	// which returns idle connections' buffers to a pool, is off; its cost
	// per request was not measured): 64 MiB for 1,000 open connections at
	// the default, 64 KiB (net/http's server holds 4 KiB per connection).
	MaxHeaderBytes int
	// MaxBodyBytes bounds a request body, which is read whole before the
	// handler runs; larger bodies get 413. Set it above the handlers' own
	// bounds (the lookup service's MaxBodyBytes, 1 MiB by default) so that
	// they answer with their own messages. Default 4 MiB.
	MaxBodyBytes int
	// ShutdownTimeout is how long Serve waits, once its context ends, for
	// the requests in progress to finish; then it closes every connection
	// still open. Default 5 s.
	ShutdownTimeout time.Duration
	// Log receives errors of the server itself (not of handlers). Default
	// none.
	Log *zap.Logger
}

func (o *Options) defaults() {
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 90 * time.Second
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 4 << 20
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = ShutdownTimeout
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
}

// DateUpdater is the function of the one goroutine fasthttp starts for
// the life of the process (it refreshes the Date header every second),
// for goleak.IgnoreAnyFunction in tests that check no goroutine outlives
// them.
const DateUpdater = "github.com/valyala/fasthttp.updateServerDate.func1"

// ShutdownTimeout is Options.ShutdownTimeout's default.
const ShutdownTimeout = 5 * time.Second

// Serve serves h on ln until ctx ends, then stops accepting, lets the
// requests in progress finish (up to Options.ShutdownTimeout), closes every
// connection and returns nil once nothing of the server runs; or returns
// the listener's error. It closes ln. Like net/http's server it retries
// accepting after a temporary error (out of file descriptors: EMFILE,
// ENFILE), with a backoff from 5 ms to 1 s, rather than stopping.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, o Options) error {
	o.defaults()
	if ctx.Err() != nil {
		_ = ln.Close()
		return nil
	}
	tl := &trackingListener{Listener: ln, log: o.Log, conns: map[*trackedConn]struct{}{}}
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	srv := &fasthttp.Server{
		Handler:                      Handler(base, h, o.Log),
		ErrorHandler:                 writeServerError,
		Logger:                       zapPrintf{o.Log},
		ReadTimeout:                  o.ReadTimeout,
		WriteTimeout:                 o.WriteTimeout,
		IdleTimeout:                  o.IdleTimeout,
		ReadBufferSize:               o.MaxHeaderBytes,
		MaxRequestBodySize:           o.MaxBodyBytes,
		NoDefaultServerHeader:        true, // net/http sends none
		NoDefaultContentType:         true, // Handler sniffs, as net/http does
		DisablePreParseMultipartForm: true, // handlers parse what they accept
		CloseOnShutdown:              true,
		// The worker pool's cleaner sleeps this long between rounds and
		// outlives Serve by up to one round: 100 ms (fasthttp's default is
		// 10 s) so that a stopped server leaves nothing running for long.
		// Idle workers are dropped after it too; a worker serves a whole
		// keep-alive connection, so this costs a goroutine start per new
		// connection at most.
		MaxIdleWorkerDuration: 100 * time.Millisecond,
		SecureErrorLogMessage: true, // no request contents in logs
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tl) }()
	select {
	case err := <-errc:
		tl.closeAll()
		return err
	case <-ctx.Done():
	}
	cancel() // the requests' contexts: handlers that wait give up
	sctx, scancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer scancel()
	_ = srv.ShutdownWithContext(sctx) // closes the listener; on timeout leaves the connections open
	_ = tl.Close()
	tl.closeAll()
	<-errc
	return nil
}

// trackingListener retries temporary Accept errors (fasthttp's server
// stops at any error but a timeout) and keeps the accepted connections,
// so that Serve can close those still open when it stops.
type trackingListener struct {
	net.Listener
	log   *zap.Logger
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
	done  bool // closeAll ran: close what is accepted after it
}

func (l *trackingListener) Accept() (net.Conn, error) {
	delay := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !temporary(err) {
				return nil, err
			}
			l.log.Warn("accepting a connection failed; retrying", zap.Error(err), zap.Duration("in", delay))
			time.Sleep(delay)
			delay = min(2*delay, time.Second)
			continue
		}
		tc := &trackedConn{Conn: c, l: l}
		l.mu.Lock()
		done := l.done
		if !done {
			l.conns[tc] = struct{}{}
		}
		l.mu.Unlock()
		if done {
			_ = c.Close()
			continue
		}
		if t, ok := c.(*tls.Conn); ok {
			return trackedTLSConn{tc, t}, nil // fasthttp finds the TLS state through these methods
		}
		return tc, nil
	}
}

// temporary reports whether an Accept error passes: out of file
// descriptors or buffers, or a connection aborted before it was accepted.
func temporary(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED)
}

// closeAll closes every connection still open, and any accepted later.
func (l *trackingListener) closeAll() {
	l.mu.Lock()
	l.done = true
	conns := l.conns
	l.conns = map[*trackedConn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

// trackedTLSConn is a trackedConn over TLS, with the methods fasthttp
// looks for to report the TLS state (Request.TLS).
type trackedTLSConn struct {
	*trackedConn
	tls *tls.Conn
}

func (c trackedTLSConn) Handshake() error                     { return c.tls.Handshake() }
func (c trackedTLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// Handler returns the fasthttp handler that serves h: each request becomes
// a new *http.Request (with base as its context) and h's response is
// buffered, then written by fasthttp with a Content-Length. See the
// package documentation for what differs from net/http's server.
//
// A handler that panics does not stop the process: the panic is logged
// (unless it is http.ErrAbortHandler, as with net/http), whatever the
// handler wrote is dropped, and the client gets a 500 error and a closed
// connection (net/http's server closes it without a response).
func Handler(base context.Context, h http.Handler, log *zap.Logger) fasthttp.RequestHandler {
	template := (&http.Request{}).WithContext(base)
	return func(ctx *fasthttp.RequestCtx) {
		r, err := newRequest(ctx, template)
		if err != nil {
			writeError(ctx, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		if base.Err() != nil {
			ctx.SetConnectionClose() // shutting down: no next request on this connection
		}
		w := writerPool.Get().(*responseWriter)
		*w = responseWriter{ctx: ctx, header: w.header}
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					log.Error("panic serving a request", zap.String("method", r.Method), zap.String("uri", r.RequestURI),
						zap.Any("panic", p), zap.StackSkip("stack", 1))
				}
				writeError(ctx, http.StatusInternalServerError, "internal", "the server failed while answering this request; its log has the details")
				ctx.SetConnectionClose()
			} else {
				w.finish()
			}
			clear(w.header)
			w.ctx = nil
			writerPool.Put(w)
		}()
		h.ServeHTTP(w, r)
	}
}

// newRequest builds the *http.Request of ctx's request, a copy of
// template (for its context). Every string is copied out of fasthttp's
// buffers; the body reads ctx's body in place.
func newRequest(ctx *fasthttp.RequestCtx, template *http.Request) (*http.Request, error) {
	uri := string(ctx.RequestURI())
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, fmt.Errorf("malformed request target: %w", err)
	}
	r := new(http.Request)
	*r = *template
	r.Method = method(ctx.Method())
	r.URL = u
	r.RequestURI = uri
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	if !ctx.Request.Header.IsHTTP11() {
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	r.Host = string(ctx.Host())
	r.RemoteAddr = ctx.RemoteAddr().String()
	r.TLS = ctx.TLSConnectionState()
	r.Header = make(http.Header, ctx.Request.Header.Len())
	for k, v := range ctx.Request.Header.All() {
		name := headerName(k)
		switch name {
		case "Host", "Trailer":
			continue // net/http keeps Host in r.Host; no trailers are read
		case "Transfer-Encoding":
			r.TransferEncoding = append(r.TransferEncoding, string(v))
			continue
		}
		r.Header[name] = append(r.Header[name], string(v))
	}
	body := ctx.PostBody()
	r.ContentLength = int64(len(body))
	if len(body) == 0 {
		r.Body = http.NoBody
	} else {
		br := &bytes.Reader{}
		br.Reset(body)
		r.Body = io.NopCloser(br)
	}
	return r, nil
}

// knownMethods are the methods method returns without allocating.
var knownMethods = [...]string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions}

// method returns m as a string, without allocating for the usual methods.
func method(m []byte) string {
	for _, k := range knownMethods {
		if string(m) == k {
			return k
		}
	}
	return string(m)
}

// commonHeaders are the header names most requests carry, returned by
// headerName without allocating.
var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Host", "Origin", "Referer", "User-Agent",
		"X-Consumer", "X-Feature-Service", "X-Request-Id", "Transfer-Encoding", "Trailer"} {
		m[k] = k
	}
	return m
}()

// headerName returns the canonical form of a header name fasthttp read
// (it normalizes names as net/http does).
func headerName(k []byte) string {
	if s, ok := commonHeaders[string(k)]; ok {
		return s
	}
	return http.CanonicalHeaderKey(string(k))
}

// responseWriter is the http.ResponseWriter of Handler: headers are copied
// into fasthttp's response at WriteHeader (later changes are ignored, as
// with net/http), the body appended to its buffer.
type responseWriter struct {
	ctx    *fasthttp.RequestCtx
	header http.Header
	status int  // 0 until WriteHeader
	sniff  bool // no Content-Type was set: finish sniffs one
}

var writerPool = sync.Pool{New: func() any { return &responseWriter{header: make(http.Header)} }}

func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader sends code and the headers set so far. As with net/http,
// informational codes (1xx) other than 101 are not final: they are dropped
// (nothing is sent before the buffered response), and a later WriteHeader
// still sets the status. An invalid code is answered as 500.
func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		return
	}
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	w.status = code
	w.ctx.SetStatusCode(code)
	rh := &w.ctx.Response.Header
	_, typed := w.header["Content-Type"]
	w.sniff = !typed
	for k, vs := range w.header {
		switch k {
		case "Content-Length":
			// fasthttp frames the buffered body with its length; a HEAD
			// answer without a body (http.FileServer's) keeps this one.
			if n, err := strconv.Atoi(firstValue(vs)); err == nil && n >= 0 {
				rh.SetContentLength(n)
			}
			continue
		case "Transfer-Encoding":
			continue // fasthttp frames the buffered body itself
		case "Content-Type":
			if len(vs) > 0 {
				rh.SetContentType(vs[0])
			}
			continue
		}
		for _, v := range vs {
			rh.Add(k, v)
		}
	}
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK) // no-op once sent
	return w.ctx.Write(b)
}

// WriteString lets io.WriteString write without a conversion.
func (w *responseWriter) WriteString(s string) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.ctx.WriteString(s)
}

// finish completes a response the handler returned from: 200 if it wrote
// nothing, a sniffed Content-Type if it set none and wrote a body.
func (w *responseWriter) finish() {
	w.WriteHeader(http.StatusOK)
	if body := w.ctx.Response.Body(); w.sniff && len(body) > 0 {
		w.ctx.Response.Header.SetContentType(http.DetectContentType(body))
	}
}

func firstValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// writeServerError answers the errors fasthttp meets before a handler
// runs (fasthttp.Server.ErrorHandler).
func writeServerError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var timeout interface{ Timeout() bool }
	switch {
	case errors.As(err, &small):
		writeError(ctx, http.StatusRequestHeaderFieldsTooLarge, "header_too_large", "request line and headers exceed the server's bound")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds the server's bound")
	case errors.As(err, &timeout) && timeout.Timeout():
		writeError(ctx, http.StatusRequestTimeout, "request_timeout", "the request was not read in time")
	default:
		writeError(ctx, http.StatusBadRequest, "bad_request", "malformed HTTP request: "+err.Error())
	}
	ctx.SetConnectionClose()
}

// writeError answers {"error":{"code":code,"message":msg}} with status.
func writeError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	b := jsonenc.AppendString([]byte(`{"error":{"code":`), code)
	b = append(b, `,"message":`...)
	b = jsonenc.AppendString(b, msg)
	ctx.SetBody(append(b, "}}\n"...))
}

// zapPrintf is fasthttp.Logger over zap.
type zapPrintf struct{ log *zap.Logger }

func (z zapPrintf) Printf(format string, args ...any) {
	z.log.Warn("http server", zap.String("error", fmt.Sprintf(format, args...)))
}
