package schemaregistry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/schemaregistry"
	"github.com/featurepipe/featurepipe/internal/schemaregistry/registrytest"
	"github.com/featurepipe/featurepipe/schemas"
)

const v1 = `{"type":"record","name":"Payment","namespace":"t","fields":[{"name":"user_id","type":"string"},{"name":"amount","type":"double"}]}`
const v2 = `{"type":"record","name":"Payment","namespace":"t","fields":[{"name":"user_id","type":"string"},{"name":"amount","type":"double"},{"name":"note","type":"string","default":""}]}`

func parse(t *testing.T, text string) *schemas.Schema {
	t.Helper()
	s, err := schemas.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newClient(t *testing.T, o schemaregistry.Options) *schemaregistry.Client {
	t.Helper()
	c, err := schemaregistry.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRegisterIsIdempotentAndSchemaByIDFetchesOncePerID(t *testing.T) {
	reg := registrytest.New()
	url, stop := reg.Start()
	defer stop()
	ctx := context.Background()
	producer := newClient(t, schemaregistry.Options{URL: url})
	id1, err := producer.Register(ctx, "payments-value", parse(t, v1))
	if err != nil {
		t.Fatal(err)
	}
	again, err := producer.Register(ctx, "payments-value", parse(t, v1))
	if err != nil || again != id1 {
		t.Fatalf("registering the same schema again = %d, %v; want the existing id %d", again, err, id1)
	}
	id2, err := producer.Register(ctx, "payments-value", parse(t, v2))
	if err != nil || id2 == id1 {
		t.Fatalf("registering an evolved schema = %d, %v; want a new id", id2, err)
	}

	// A consumer's client: 50 goroutines ask for both ids at once.
	consumer := newClient(t, schemaregistry.Options{URL: url})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 50; i++ {
		for _, id := range []uint32{id1, id2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := consumer.SchemaByID(ctx, id)
				switch {
				case err != nil:
					errs <- err
				case id == id2 && len(s.Fields) != 3, id == id1 && len(s.Fields) != 2:
					errs <- errors.New("wrong schema for id")
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range []uint32{id1, id2} {
		if n := reg.IDFetches(int(id)); n != 1 {
			t.Errorf("GET /schemas/ids/%d served %d times for 50 concurrent callers, want 1", id, n)
		}
		if _, ok := consumer.Cached(id); !ok {
			t.Errorf("id %d not cached after the fetch", id)
		}
	}
}

func TestUnknownIDIsNotFoundAndRemembered(t *testing.T) {
	reg := registrytest.New()
	url, stop := reg.Start()
	defer stop()
	c := newClient(t, schemaregistry.Options{URL: url})
	for i := 0; i < 3; i++ {
		_, err := c.SchemaByID(context.Background(), 99)
		if !errors.Is(err, schemaregistry.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	}
	if n := reg.IDFetches(99); n != 0 { // the registry counts only ids it has
		t.Fatalf("IDFetches = %d", n)
	}
	if n := reg.Requests(); n != 1 {
		t.Errorf("3 look-ups of an unknown id sent %d requests, want 1 (remembered for NotFoundTTL)", n)
	}
}

func TestIncompatibleRegistrationIsAnError(t *testing.T) {
	reg := registrytest.New()
	url, stop := reg.Start()
	defer stop()
	c := newClient(t, schemaregistry.Options{URL: url})
	ctx := context.Background()
	if _, err := c.Register(ctx, "s-value", parse(t, v1)); err != nil {
		t.Fatal(err)
	}
	incompatible := `{"type":"record","name":"Payment","namespace":"t","fields":[{"name":"user_id","type":"string"},{"name":"amount","type":"string"}]}`
	_, err := c.Register(ctx, "s-value", parse(t, incompatible))
	var e *schemaregistry.Error
	if !errors.As(err, &e) || e.Status != http.StatusConflict || e.Code != 409 {
		t.Fatalf("err = %v, want *Error with HTTP 409", err)
	}
}

func TestCredentials(t *testing.T) {
	reg := registrytest.New()
	reg.Username, reg.Password = "fp", "s3cret"
	url, stop := reg.Start()
	defer stop()
	ctx := context.Background()
	good := newClient(t, schemaregistry.Options{URL: url, Username: "fp", Password: "s3cret"})
	id, err := good.Register(ctx, "s-value", parse(t, v1))
	if err != nil {
		t.Fatal(err)
	}
	bad := newClient(t, schemaregistry.Options{URL: url, Username: "fp", Password: "wrong"})
	_, err = bad.SchemaByID(ctx, id)
	var e *schemaregistry.Error
	if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), "password_env") {
		t.Fatalf("err = %v, want a 401 *Error that names password_env", err)
	}
	if errors.Is(err, schemaregistry.ErrNotFound) || errors.Is(err, schemaregistry.ErrUnavailable) {
		t.Fatalf("a 401 must be neither not-found nor unavailable: %v", err)
	}
}

func TestUnavailableRegistryRetriesThenFails(t *testing.T) {
	reg := registrytest.New()
	var calls atomic.Int64
	var down atomic.Bool
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			calls.Add(1)
			http.Error(w, `{"error_code":50001,"message":"store down"}`, http.StatusInternalServerError)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := newClient(t, schemaregistry.Options{URL: srv.URL, RetryFor: 500 * time.Millisecond})
	start := time.Now()
	_, err := c.SchemaByID(context.Background(), 1)
	if !errors.Is(err, schemaregistry.ErrUnavailable) || !strings.Contains(err.Error(), "store down") {
		t.Fatalf("err = %v, want ErrUnavailable with the registry's message", err)
	}
	if calls.Load() < 2 {
		t.Errorf("%d calls, want retries", calls.Load())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v; RetryFor is 500ms", d)
	}
	// The failure is not cached: once the registry is back, the next call
	// succeeds.
	down.Store(false)
	id, err := newClient(t, schemaregistry.Options{URL: srv.URL}).Register(context.Background(), "x-value", parse(t, v1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SchemaByID(context.Background(), id); err != nil {
		t.Fatalf("after the registry recovered: %v", err)
	}

	// Nothing listening: connection refused is unavailable too.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	_, err = newClient(t, schemaregistry.Options{URL: closed.URL, RetryFor: -1}).SchemaByID(context.Background(), 1)
	if !errors.Is(err, schemaregistry.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

// A bare 404 (no registry error code) is most likely a wrong URL, such as
// Apicurio's base without /apis/ccompat/v7: it must not read as an unknown
// schema, or every record would be dead-lettered.
func TestWrongURLIsNotAnUnknownSchema(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := newClient(t, schemaregistry.Options{URL: srv.URL}).SchemaByID(context.Background(), 1)
	var e *schemaregistry.Error
	if errors.Is(err, schemaregistry.ErrNotFound) || !errors.As(err, &e) || e.Status != 404 {
		t.Fatalf("err = %v, want a plain *Error 404", err)
	}
}

func TestNewValidatesTheURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8081", "ftp://x", "http://"} {
		if _, err := schemaregistry.New(schemaregistry.Options{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}
