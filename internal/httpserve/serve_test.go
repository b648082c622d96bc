package httpserve

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"
)

// echoHandler answers by path, covering what featurepipe's handlers rely
// on: the request as a handler sees it, status codes, header rules,
// sniffing, and body bounds.
func echoHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		form := r.PostFormValue("f") // reads a form body; leaves others
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "path": r.URL.Path, "query": r.URL.Query().Get("q"), "uri": r.RequestURI,
			"host": r.Host, "proto": r.Proto, "length": r.ContentLength, "body": string(body),
			"consumer": r.Header.Get("X-Featurepipe-Consumer"), "multi": r.Header.Values("X-Multi"),
			"auth": r.Header.Get("Authorization"), "hostHeader": r.Header.Get("Host"), "tls": r.TLS != nil,
			"cookies": r.Cookies(), "form": form,
		})
	})
	mux.HandleFunc("POST /v1/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"id":%q}`, r.PathValue("id"))
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "a", Value: "1", Path: "/"})
		http.SetCookie(w, &http.Cookie{Name: "b", Value: "2", HttpOnly: true})
		http.Redirect(w, r, "/echo?q=1", http.StatusSeeOther)
	})
	mux.Handle("/static/", http.StripPrefix("/static/", http.FileServerFS(fstest.MapFS{"a.txt": {Data: []byte("static text\n")}})))
	mux.HandleFunc("/no-content", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "<html><body>hi</body></html>") })
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/late-header", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Early", "1")
		w.WriteHeader(http.StatusAccepted)
		w.Header().Set("X-Late", "1") // after WriteHeader: not sent
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("/multi", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("Content-Length", "3") // as the lookup answer sets it for large answers
		_, _ = w.Write([]byte("two"))
	})
	mux.HandleFunc("/continue", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusContinue) // informational: not the final status
		w.WriteHeader(http.StatusTeapot)
	})
	mux.HandleFunc("/bounded", func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 10))
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		_, _ = w.Write([]byte("fits"))
	})
	return mux
}

type reply struct {
	status                 int
	body                   string
	contentType            string
	multi, late, early, cl string
	allow, location        string
	cookies                string
}

func do(t *testing.T, c *http.Client, method, url, body string, header [][2]string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range header {
		k, v := kv[0], kv[1]
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Add(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the body: %v", method, url, err)
	}
	return reply{status: resp.StatusCode, body: string(b), contentType: resp.Header.Get("Content-Type"),
		multi: strings.Join(resp.Header.Values("X-Multi"), ","), late: resp.Header.Get("X-Late"),
		early: resp.Header.Get("X-Early"), cl: resp.Header.Get("Content-Length"), allow: resp.Header.Get("Allow"),
		location: resp.Header.Get("Location"), cookies: strings.Join(resp.Header.Values("Set-Cookie"), " | ")}
}

// serve starts Serve on a loopback listener (wrapped by wrap, if any) and
// returns its base URL; the server stops with the test.
func serve(t *testing.T, h http.Handler, o Options, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + addr
}

// TestHandlersSeeWhatNetHTTPGivesThem sends the same requests to the same
// handler behind net/http's server and behind Serve, and compares what
// comes back: status, body (which echoes the request as the handler saw
// it), Content-Type (set or sniffed) and the header rules.
func TestHandlersSeeWhatNetHTTPGivesThem(t *testing.T) {
	h := echoHandler()
	std := httptest.NewServer(h)
	defer std.Close()
	fast := serve(t, h, Options{}, nil)
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cases := []struct {
		method, path, body string
		header             [][2]string
	}{
		{"GET", "/echo?q=a%20b", "", [][2]string{{"X-Featurepipe-Consumer", "fraud-model"}, {"Authorization", "Bearer t0k"}}},
		{"POST", "/echo", `{"entity":"user","keys":["u1"]}`, [][2]string{{"X-Multi", "1"}, {"x-multi", "2"}}},
		{"POST", "/echo", "", nil},
		{"POST", "/echo", "f=a+b&g=2", [][2]string{{"Content-Type", "application/x-www-form-urlencoded"}, {"Cookie", "fp_token=abc; other=x y"}}},
		{"PUT", "/echo/", "", nil}, // the mux redirects to /echo... or 404s: the same either way
		{"GET", "/echo", "", [][2]string{{"Host", "lookup.example:8080"}}},
		{"POST", "/v1/items/u%2F1", "", nil},
		{"GET", "/v1/items/u1", "", nil}, // 405 from the mux, with its Allow header
		{"GET", "/nowhere", "", nil},
		{"GET", "/no-content", "", nil},
		{"GET", "/sniff", "", nil},
		{"GET", "/empty", "", nil},
		{"GET", "/late-header", "", nil},
		{"GET", "/multi", "", nil},
		{"GET", "/continue", "", nil},
		{"POST", "/bounded", "0123456789", nil},
		{"POST", "/bounded", "0123456789A", nil},
		{"HEAD", "/sniff", "", nil},
		{"GET", "/redirect", "", nil},
		{"GET", "/static/a.txt", "", nil},
		{"HEAD", "/static/a.txt", "", nil},
	}
	for _, tc := range cases {
		want := do(t, c, tc.method, std.URL+tc.path, tc.body, tc.header)
		got := do(t, c, tc.method, fast+tc.path, tc.body, tc.header)
		want.body = strings.ReplaceAll(want.body, std.URL[len("http://"):], "ADDR")
		got.body = strings.ReplaceAll(got.body, fast[len("http://"):], "ADDR")
		if want.cl == "" { // net/http sends none for 204 and 1xx; httpserve always frames with one
			got.cl = ""
		}
		if got != want {
			t.Errorf("%s %s:\n got %+v\nwant %+v (net/http)", tc.method, tc.path, got, want)
		}
		if strings.Contains(tc.body, "f=a+b") && (!strings.Contains(got.body, `"form":"a b"`) || !strings.Contains(got.body, `"Value":"abc"`)) {
			t.Errorf("the form and cookie did not reach the handler: %s", got.body)
		}
	}
}

// TestRequestsOverTLS: a handler sees r.TLS on a TLS listener.
func TestRequestsOverTLS(t *testing.T) {
	std := httptest.NewTLSServer(echoHandler()) // for its certificate and a client that trusts it
	defer std.Close()
	cfg := std.TLS.Clone()
	fast := serve(t, echoHandler(), Options{}, func(ln net.Listener) net.Listener { return tls.NewListener(ln, cfg) })
	r := do(t, std.Client(), "GET", "https://"+strings.TrimPrefix(fast, "http://")+"/echo", "", nil)
	if r.status != 200 || !strings.Contains(r.body, `"tls":true`) {
		t.Fatalf("over TLS: %+v", r)
	}
}

// raw sends req on a new connection and returns the response's status
// and body.
func raw(t *testing.T, base, req string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServerErrorsAreJSON: what fails before a handler runs gets the API's
// error shape and the status a client can act on.
func TestServerErrorsAreJSON(t *testing.T) {
	base := serve(t, echoHandler(), Options{MaxHeaderBytes: 4096, MaxBodyBytes: 100}, nil)
	for _, tc := range []struct {
		name, req string
		status    int
		code      string
	}{
		{"header over MaxHeaderBytes", "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", 431, "header_too_large"},
		{"body over MaxBodyBytes", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n" + strings.Repeat("a", 101), 413, "body_too_large"},
		{"malformed request line", "GARBAGE\r\n\r\n", 400, "bad_request"},
	} {
		status, body := raw(t, base, tc.req)
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || status != tc.status || e.Error.Code != tc.code || e.Error.Message == "" {
			t.Errorf("%s: %d %q (%v); want %d with code %s", tc.name, status, body, err, tc.status, tc.code)
		}
	}
	// A body within the bound still reaches the handler.
	if status, body := raw(t, base, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("a", 100)); status != 200 || !strings.Contains(body, `"length":100`) {
		t.Errorf("body of 100 bytes: %d %q", status, body)
	}
}

// TestPanicIsAnswered500AndServingGoesOn: a panicking handler costs its
// request, not the process.
func TestPanicIsAnswered500AndServingGoesOn(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("partial"))
		panic("boom")
	})
	mux.Handle("/", echoHandler())
	base := serve(t, mux, Options{}, nil)
	c := &http.Client{Timeout: 10 * time.Second}
	r := do(t, c, "GET", base+"/panic", "", nil)
	if r.status != 500 || strings.Contains(r.body, "partial") || !strings.Contains(r.body, `"code":"internal"`) {
		t.Fatalf("panic: %+v", r)
	}
	if r := do(t, c, "GET", base+"/echo", "", nil); r.status != 200 {
		t.Fatalf("after the panic: %+v", r)
	}
	// The panicking request's writer, reused, starts clean: an empty
	// answer gets no sniffed Content-Type, as with net/http.
	for range 4 {
		if r := do(t, c, "GET", base+"/panic", "", nil); r.status != 500 {
			t.Fatalf("panic: %+v", r)
		}
		if r := do(t, c, "GET", base+"/empty", "", nil); r.status != 200 || r.contentType != "" {
			t.Fatalf("an empty answer after a panic: %+v", r)
		}
	}
}

// TestShutdownEndsRequestContexts: when Serve's context ends, a request in
// progress sees its context end, its response still reaches the client,
// and Serve returns nil.
func TestShutdownEndsRequestContexts(t *testing.T) {
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			_, _ = w.Write([]byte("stopped"))
		case <-time.After(10 * time.Second):
			_, _ = w.Write([]byte("not stopped"))
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, Options{}) }()
	got := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	<-started
	t0 := time.Now()
	cancel()
	if r := <-got; r != "200 stopped" {
		t.Fatalf("request in progress at shutdown: %s", r)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(t0); d > ShutdownTimeout {
		t.Fatalf("shutdown took %v", d)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting after Serve returned")
	}
}

// TestShutdownClosesWhatOutlivesTheTimeout: a request still running when
// ShutdownTimeout ends has its connection closed, and Serve returns.
func TestShutdownClosesWhatOutlivesTheTimeout(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release // ignores its context
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, Options{ShutdownTimeout: 200 * time.Millisecond}) }()
	got := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its shutdown timeout")
	}
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("the request outliving the shutdown got an answer; want its connection closed")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the connection of the request outliving the shutdown is still open")
	}
	close(release)
}

// TestServeWithAStoppedContext: started after its context ended, Serve
// returns at once and serves nothing.
func TestServeWithAStoppedContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Serve(ctx, ln, echoHandler(), Options{}); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the listener still accepts")
	}
}

// flakyListener fails its first accepts as a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptRetriesWhenOutOfFiles: EMFILE does not stop the server (fasthttp
// alone would return it from Serve).
func TestAcceptRetriesWhenOutOfFiles(t *testing.T) {
	base := serve(t, echoHandler(), Options{}, func(ln net.Listener) net.Listener { return &flakyListener{Listener: ln, fails: 3} })
	if r := do(t, &http.Client{Timeout: 10 * time.Second}, "GET", base+"/echo", "", nil); r.status != 200 {
		t.Fatalf("after EMFILE: %+v", r)
	}
}
