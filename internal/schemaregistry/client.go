// Package schemaregistry is a client of a Confluent-compatible schema
// registry (Confluent Schema Registry's REST API, which Apicurio Registry
// serves at /apis/ccompat/v7 and Karapace and Redpanda serve too), for the
// Avro writer schemas of records in Confluent's wire format.
//
// It uses two calls of that API:
//
//	GET  /schemas/ids/{id}             the schema registered under id
//	POST /subjects/{subject}/versions  register a schema (or find it: a schema
//	                                   already registered gets its existing id)
//
// Schemas are immutable under their id, so every id is fetched at most once
// per Client: concurrent callers asking for the same id share one request,
// and the parsed schema is kept for the life of the Client (a few KiB per
// id; a topic sees a handful). An id the registry does not know (error code
// 40403) is remembered for NotFoundTTL so that a run of records carrying it
// does not become a run of requests (at most 10,000 such ids are kept past
// their TTL).
//
// Errors: ErrNotFound for an unknown id or subject (permanent: dead-letter
// the record), ErrUnavailable for a registry that could not be reached or
// answered 5xx or 429 within the retry budget (transient: retry later, do not
// dead-letter), and *Error for any other answer (its Code is the registry's
// error_code, e.g. 42201 for an invalid schema; 401 and 403 name the
// credentials to check).
package schemaregistry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/featurepipe/featurepipe/schemas"
)

// Defaults of Options.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultRetryFor    = 30 * time.Second
	DefaultNotFoundTTL = time.Minute
)

// Sentinel errors; check them with errors.Is.
var (
	// ErrNotFound: the registry does not know the schema id (40403) or
	// subject (40401).
	ErrNotFound = errors.New("not found in the schema registry")
	// ErrUnavailable: the registry could not be reached, timed out, or
	// answered 5xx or 429, for longer than Options.RetryFor.
	ErrUnavailable = errors.New("schema registry unavailable")
)

// Error is an answer of the registry that is neither success nor one of the
// sentinels' cases.
type Error struct {
	Op      string // e.g. "GET /schemas/ids/7"
	Status  int    // HTTP status
	Code    int    // the registry's error_code, or 0 when the body had none
	Message string // the registry's message, or the body's start
}

func (e *Error) Error() string {
	hint := ""
	switch e.Status {
	case http.StatusUnauthorized:
		hint = " (check kafka.schema_registry.username and the password in the environment variable named by password_env)"
	case http.StatusForbidden:
		hint = " (the registry user lacks the permission for this call)"
	}
	code := ""
	if e.Code != 0 {
		code = " error_code " + strconv.Itoa(e.Code)
	}
	return fmt.Sprintf("schema registry: %s: HTTP %d%s: %s%s", e.Op, e.Status, code, e.Message, hint)
}

// Options configure a Client. Only URL is required.
type Options struct {
	// URL is the registry's base URL, e.g. http://localhost:8081 for
	// Confluent's or http://localhost:8080/apis/ccompat/v7 for Apicurio's.
	URL string
	// Username and Password, when Username is set, are sent with HTTP basic
	// authentication (Confluent's basic.auth.user.info).
	Username, Password string
	// Timeout bounds one HTTP request. Default DefaultTimeout (10s).
	Timeout time.Duration
	// RetryFor bounds how long a call retries a transient failure
	// (connection refused, timeout, 5xx, 429) with exponential backoff from
	// 100ms to 5s, before returning ErrUnavailable. Default
	// DefaultRetryFor (30s); negative disables retries.
	RetryFor time.Duration
	// NotFoundTTL is how long an unknown id is remembered. Default
	// DefaultNotFoundTTL (1m).
	NotFoundTTL time.Duration
	// HTTPClient sends the requests. Default: a client of its own with
	// Timeout.
	HTTPClient *http.Client
}

// Client is a caching schema registry client. Safe for concurrent use.
type Client struct {
	o    Options
	base *url.URL

	mu       sync.Mutex
	ids      map[uint32]*entry
	notFound int // entries of unknown ids in ids, expired or not
}

// maxNotFound bounds the remembered unknown ids: past it, expired ones are
// dropped, so a stream of garbage ids cannot grow the cache for ever.
const maxNotFound = 10_000

// sweepLocked drops expired not-found entries. c.mu must be held.
func (c *Client) sweepLocked() {
	now := time.Now()
	for id, e := range c.ids {
		if !e.expires.IsZero() && now.After(e.expires) {
			delete(c.ids, id)
			c.notFound--
		}
	}
}

// entry is one id's fetch: done is closed once s or err is set.
type entry struct {
	done    chan struct{}
	s       *schemas.Schema
	err     error
	expires time.Time // for a not-found entry
}

// New validates o and returns a client. It sends nothing.
func New(o Options) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(o.URL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("schema registry URL %q: want http(s)://host[:port][/path]", o.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryFor == 0 {
		o.RetryFor = DefaultRetryFor
	}
	if o.NotFoundTTL <= 0 {
		o.NotFoundTTL = DefaultNotFoundTTL
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.Timeout}
	}
	return &Client{o: o, base: u, ids: make(map[uint32]*entry)}, nil
}

// URL returns the registry's base URL as configured.
func (c *Client) URL() string { return c.base.String() }

// Cached returns the schema of id if it has been fetched already. It never
// sends a request and costs one mutex acquisition.
func (c *Client) Cached(id uint32) (*schemas.Schema, bool) {
	c.mu.Lock()
	e := c.ids[id]
	c.mu.Unlock()
	if e == nil {
		return nil, false
	}
	select {
	case <-e.done:
		return e.s, e.s != nil
	default:
		return nil, false
	}
}

// SchemaByID returns the writer schema registered under id, fetching it on
// first use (GET /schemas/ids/{id}) and from the cache afterwards. Callers
// asking for an id being fetched wait for that fetch (or their ctx). Errors
// wrap ErrNotFound, ErrUnavailable, ctx's error, or are an *Error; a schema
// that is not an Avro record is an error too (featurepipe reads records).
// A transient failure is not cached: the next call tries again.
func (c *Client) SchemaByID(ctx context.Context, id uint32) (*schemas.Schema, error) {
	for {
		c.mu.Lock()
		e := c.ids[id]
		if e != nil && !e.expires.IsZero() && time.Now().After(e.expires) {
			delete(c.ids, id) // a remembered not-found has expired
			c.notFound--
			e = nil
		}
		owner := e == nil
		if owner {
			e = &entry{done: make(chan struct{})}
			c.ids[id] = e
		}
		c.mu.Unlock()
		if owner {
			e.s, e.err = c.fetch(ctx, id)
			c.mu.Lock()
			switch {
			case e.err == nil:
			case errors.Is(e.err, ErrNotFound):
				e.expires = time.Now().Add(c.o.NotFoundTTL)
				c.notFound++
				if c.notFound > maxNotFound {
					c.sweepLocked()
				}
			default:
				delete(c.ids, id) // transient or caller's ctx: let the next call retry
			}
			c.mu.Unlock()
			close(e.done)
			return e.s, e.err
		}
		select {
		case <-e.done:
			if e.err == nil || errors.Is(e.err, ErrNotFound) {
				return e.s, e.err
			}
			// The owner's fetch failed for its own reasons (maybe its
			// ctx); try again under ours.
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *Client) fetch(ctx context.Context, id uint32) (*schemas.Schema, error) {
	op := "GET /schemas/ids/" + strconv.FormatUint(uint64(id), 10)
	var resp struct {
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
	}
	if err := c.call(ctx, http.MethodGet, "/schemas/ids/"+strconv.FormatUint(uint64(id), 10), nil, &resp, op); err != nil {
		return nil, err
	}
	if resp.SchemaType != "" && !strings.EqualFold(resp.SchemaType, "AVRO") {
		return nil, fmt.Errorf("schema registry: schema id %d is %s, not Avro", id, resp.SchemaType)
	}
	s, err := schemas.Parse([]byte(resp.Schema))
	if err != nil {
		return nil, fmt.Errorf("schema registry: schema id %d: %w", id, err)
	}
	return s, nil
}

// Register registers s under subject (POST /subjects/{subject}/versions)
// and returns its id. Registering a schema the subject already has returns
// the existing id and creates no version, so this is also the look-up a
// producer does at start. The registry's compatibility check applies: an
// incompatible schema is an *Error with Code 409 or 42201. The schema is
// cached under its id, so decoding what was just produced sends nothing.
func (c *Client) Register(ctx context.Context, subject string, s *schemas.Schema) (uint32, error) {
	body, err := json.Marshal(map[string]string{"schema": s.Codec.Schema()})
	if err != nil {
		return 0, fmt.Errorf("schema registry: register under %s: %w", subject, err)
	}
	var resp struct {
		ID *int64 `json:"id"`
	}
	path := "/subjects/" + url.PathEscape(subject) + "/versions"
	if err := c.call(ctx, http.MethodPost, path, body, &resp, "POST "+path); err != nil {
		return 0, err
	}
	if resp.ID == nil || *resp.ID < 0 || *resp.ID > 1<<32-1 {
		return 0, fmt.Errorf("schema registry: POST %s: answer has no valid id", path)
	}
	id := uint32(*resp.ID)
	c.mu.Lock()
	if e := c.ids[id]; e == nil || !e.expires.IsZero() {
		if e != nil {
			c.notFound-- // an id unknown before, registered now
		}
		e = &entry{done: make(chan struct{}), s: s}
		close(e.done)
		c.ids[id] = e
	}
	c.mu.Unlock()
	return id, nil
}

// SubjectForTopic is Confluent's default TopicNameStrategy for record
// values: "<topic>-value".
func SubjectForTopic(topic string) string { return topic + "-value" }

// call sends one request, retrying transient failures within RetryFor,
// and decodes a 200 answer's JSON into out.
func (c *Client) call(ctx context.Context, method, path string, body []byte, out any, op string) error {
	deadline := time.Now().Add(c.o.RetryFor)
	backoff := 100 * time.Millisecond
	for {
		err := c.once(ctx, method, path, body, out, op)
		if err == nil || !errors.Is(err, ErrUnavailable) || c.o.RetryFor < 0 || time.Now().Add(backoff).After(deadline) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (c *Client) once(ctx context.Context, method, path string, body []byte, out any, op string) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return fmt.Errorf("schema registry: %s: %w", op, err)
	}
	req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	}
	if c.o.Username != "" {
		req.SetBasicAuth(c.o.Username, c.o.Password)
	}
	resp, err := c.o.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("schema registry: %s: %w", op, ctx.Err())
		}
		return fmt.Errorf("%w: %s %s: %v", ErrUnavailable, op, c.base.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%w: %s: reading the answer: %v", ErrUnavailable, op, err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("schema registry: %s: answer is not the expected JSON: %v", op, err)
		}
		return nil
	}
	var e struct {
		Code    int    `json:"error_code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(data))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "..."
		}
	}
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s: HTTP %d: %s", ErrUnavailable, op, resp.StatusCode, e.Message)
	case resp.StatusCode == http.StatusNotFound && (e.Code == 40401 || e.Code == 40403):
		// Only the registry's own codes: a bare 404 is more likely a wrong
		// URL (say, Apicurio's without /apis/ccompat/v7), which must not
		// turn every record into an unknown schema.
		return fmt.Errorf("%w: %s: %s", ErrNotFound, op, e.Message)
	}
	return &Error{Op: op, Status: resp.StatusCode, Code: e.Code, Message: e.Message}
}
