package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// WireRequest returns the bytes of one HTTP/1.1 request for Options.Wire:
// the request line, Host, the header fields of h (sorted by name), a
// Content-Length when body is not nil, and body. target is the request
// target, e.g. "/v1/lookup".
func WireRequest(method, host, target string, h http.Header, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range h[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// errMalformed is wrapped by the errors of responses the wire client cannot
// parse.
var errMalformed = errors.New("malformed HTTP response")

// wireConn is one slot's keep-alive connection for Options.Wire. It is
// dialed on first use and re-dialed after an error or Connection: close.
type wireConn struct {
	o    *Options
	d    net.Dialer
	conn net.Conn
	br   *bufio.Reader
	stop func() bool // unregisters the close-on-cancel of conn
	// reused is true once conn has answered a request: a failure before the
	// first response byte on a reused connection (the server closed it while
	// idle) is retried once on a new connection, as net/http does.
	reused bool
}

func newWireConn(o *Options) *wireConn {
	return &wireConn{o: o, d: net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}}
}

func (c *wireConn) close() {
	if c.conn != nil {
		c.stop()
		c.conn.Close()
		c.conn = nil
	}
}

func (c *wireConn) dial(ctx context.Context) error {
	conn, err := c.d.DialContext(ctx, "tcp", c.o.Addr)
	if err != nil {
		return err
	}
	c.conn, c.reused = conn, false
	// Closing the connection when ctx ends interrupts a blocked read or write.
	c.stop = context.AfterFunc(ctx, func() { conn.Close() })
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 16<<10)
	} else {
		c.br.Reset(conn)
	}
	return nil
}

func (c *wireConn) send(ctx context.Context, i uint64) (status int, sentAt time.Time, err error) {
	req := c.o.Wire(i)
	sentAt = time.Now()
	for attempt := 0; ; attempt++ {
		if c.conn == nil {
			if err := c.dial(ctx); err != nil {
				return 0, sentAt, err
			}
		}
		reused := c.reused
		status, keep, started, err := c.roundTrip(req, sentAt.Add(c.o.Timeout))
		if err == nil {
			c.reused = true
			if !keep {
				c.close()
			}
			return status, sentAt, nil
		}
		c.close()
		if started || !reused || attempt > 0 || ctx.Err() != nil {
			return status, sentAt, err
		}
	}
}

// roundTrip writes req and reads one response, discarding its body.
// started reports whether any byte of the response was read.
func (c *wireConn) roundTrip(req []byte, deadline time.Time) (status int, keep, started bool, err error) {
	if err := c.conn.SetDeadline(deadline); err != nil {
		return 0, false, false, err
	}
	if _, err := c.conn.Write(req); err != nil {
		return 0, false, false, fmt.Errorf("write request: %w", err)
	}
	if _, err := c.br.Peek(1); err != nil {
		return 0, false, false, fmt.Errorf("read response: %w", err)
	}
	status, keep, err = readResponse(c.br)
	return status, keep, true, err
}

// readResponse reads one HTTP/1.x response from br and discards its body.
// keep is false when the connection cannot carry another request.
func readResponse(br *bufio.Reader) (status int, keep bool, err error) {
	for {
		line, err := readLine(br)
		if err != nil {
			return 0, false, err
		}
		// "HTTP/1.1 200 OK"
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
		}
		keep = line[7] == '1'
		status = 0
		for _, ch := range line[9:12] {
			if ch < '0' || ch > '9' {
				return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
			}
			status = status*10 + int(ch-'0')
		}
		length := int64(-1)
		chunked := false
		for {
			line, err := readLine(br)
			if err != nil {
				return status, false, err
			}
			if len(line) == 0 {
				break
			}
			colon := bytes.IndexByte(line, ':')
			if colon < 0 {
				return status, false, fmt.Errorf("%w: header line %q", errMalformed, line)
			}
			name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
			switch {
			case asciiEqualFold(name, "content-length"):
				n, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || n < 0 {
					return status, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
				}
				length = n
			case asciiEqualFold(name, "transfer-encoding"):
				chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
			case asciiEqualFold(name, "connection"):
				switch {
				case asciiEqualFold(value, "close"):
					keep = false
				case asciiEqualFold(value, "keep-alive"):
					keep = true
				}
			}
		}
		if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
			continue // an interim response; the real one follows
		}
		switch {
		case status == http.StatusNoContent || status == http.StatusNotModified:
		case chunked:
			if err := discardChunked(br); err != nil {
				return status, false, err
			}
		case length >= 0:
			if _, err := br.Discard(int(length)); err != nil {
				return status, false, fmt.Errorf("read body: %w", err)
			}
		default: // delimited by the end of the connection
			if _, err := io.Copy(io.Discard, br); err != nil {
				return status, false, fmt.Errorf("read body: %w", err)
			}
			keep = false
		}
		return status, keep, nil
	}
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return fmt.Errorf("read chunk size: %w", err)
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if n == 0 { // trailers, then an empty line
			for {
				line, err := readLine(br)
				if err != nil {
					return fmt.Errorf("read trailer: %w", err)
				}
				if len(line) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n)); err != nil {
			return fmt.Errorf("read chunk: %w", err)
		}
		if line, err := readLine(br); err != nil || len(line) != 0 {
			return fmt.Errorf("%w: no CRLF after a chunk", errMalformed)
		}
	}
}

// readLine returns the next line without its CRLF (or LF). The slice is
// valid until the next read from br.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errMalformed, br.Size())
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
