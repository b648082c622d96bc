package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/testkit/s3server"
)

// The tests in this file run against a real S3-compatible server, a fresh
// versitygw process per test (see internal/testkit/s3server); they are
// skipped when its binary is not built (make test-s3 builds it).

const testBucket = "snapshots"

// newS3 starts a server and returns a backend on bucket testBucket with
// the given prefix, parts of MinS3PartSize so that a few MiB exercise
// multipart uploads.
func newS3(t *testing.T, prefix string) (*S3Backend, *s3server.Server) {
	t.Helper()
	srv := s3server.Start(t)
	return s3On(t, srv, prefix, true), srv
}

// s3On opens another backend on srv's bucket: as another process or
// machine would.
func s3On(t *testing.T, srv *s3server.Server, prefix string, create bool) *S3Backend {
	t.Helper()
	env := srv.Env()
	o, err := S3OptionsFromEnv(S3Scheme+testBucket+"/"+prefix, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	o.PartSize = MinS3PartSize
	o.MaxRetries = 2
	b, err := NewS3Backend(context.Background(), o, create)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// incompleteUploads lists the multipart uploads in progress in b's bucket.
func incompleteUploads(t *testing.T, b *S3Backend) []string {
	t.Helper()
	var keys []string
	for up := range b.core.Client.ListIncompleteUploads(context.Background(), b.bucket, "", true) {
		if up.Err != nil {
			t.Fatalf("list incomplete uploads: %v", up.Err)
		}
		keys = append(keys, up.Key)
	}
	return keys
}

// randomBytes returns n bytes that do not compress.
func randomBytes(n int, seed byte) []byte {
	out := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(out) // never fails
	return out
}

func TestS3BackendPut(t *testing.T) {
	ctx := context.Background()
	b, _ := newS3(t, "team/snaps")
	small := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: one PUT
	big := randomBytes(2*MinS3PartSize+MinS3PartSize/2, 1)    // 12.5 MiB: three parts
	exact := randomBytes(2*MinS3PartSize, 2)                  // ends on a part boundary
	tests := []struct {
		name     string
		before   []byte // existing content under the name, if any
		r        io.Reader
		wantErr  error
		wantData []byte // expected content after Put (nil: absent)
	}{
		{"a one-request put is visible whole", nil, bytes.NewReader(small), nil, small},
		{"a multipart put is visible whole", nil, bytes.NewReader(big), nil, big},
		{"a multipart put ending on a part boundary", nil, bytes.NewReader(exact), nil, exact},
		{"a reader failing in the first part leaves nothing visible", nil, &failingReader{data: small, failAt: len(small) / 2}, errReader, nil},
		{"a reader failing after two parts leaves nothing visible", nil, &failingReader{data: big, failAt: 2*MinS3PartSize + 100}, errReader, nil},
		{"a reader failing mid multipart keeps the previous version", []byte("old"), &failingReader{data: big, failAt: MinS3PartSize + 100}, errReader, []byte("old")},
		{"a put replaces the previous version", small, bytes.NewReader(big), nil, big},
		{"an empty object is an object", nil, bytes.NewReader(nil), nil, []byte{}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("snap-%d/file.sst", i)
			if tt.before != nil {
				if err := b.Put(ctx, name, bytes.NewReader(tt.before)); err != nil {
					t.Fatal(err)
				}
			}
			err := b.Put(ctx, name, tt.r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put error = %v, want %v", err, tt.wantErr)
			}
			got, gerr := get(t, b, name)
			if tt.wantData == nil {
				if !errors.Is(gerr, ErrNotExist) {
					t.Fatalf("Get after failed Put: err = %v, want ErrNotExist", gerr)
				}
			} else if gerr != nil || !bytes.Equal(got, tt.wantData) {
				t.Fatalf("Get = %d bytes, %v; want %d bytes", len(got), gerr, len(tt.wantData))
			}
			// A failed multipart upload was aborted, not left behind.
			if ups := incompleteUploads(t, b); len(ups) != 0 {
				t.Errorf("incomplete uploads left behind: %v", ups)
			}
		})
	}
}

func TestS3BackendPutCancelledMidUpload(t *testing.T) {
	b, _ := newS3(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	data := randomBytes(3*MinS3PartSize, 3)
	// The reader cancels once the first part is uploaded and the second
	// is being read.
	r := io.MultiReader(bytes.NewReader(data[:MinS3PartSize+10]), readerFunc(func(p []byte) (int, error) {
		cancel()
		return copy(p, data[MinS3PartSize+10:MinS3PartSize+20]), nil
	}), bytes.NewReader(data[MinS3PartSize+20:]))
	if err := b.Put(ctx, "x/y.sst", r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
	if _, err := get(t, b, "x/y.sst"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Get after cancelled Put = %v, want ErrNotExist", err)
	}
	if ups := incompleteUploads(t, b); len(ups) != 0 {
		t.Fatalf("the cancelled multipart upload was not aborted: %v", ups)
	}
}

func TestS3BackendNames(t *testing.T) {
	ctx := context.Background()
	b, _ := newS3(t, "p")
	for _, name := range []string{"", ".", "/abs", "a/../b", "a//b", "../escape", ".hidden", "a/.tmp", "a/b/"} {
		if err := b.Put(ctx, name, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) succeeded, want an invalid-name error", name)
		}
		if _, err := b.Get(ctx, name); err == nil || errors.Is(err, ErrNotExist) {
			t.Errorf("Get(%q) = %v, want an invalid-name error", name, err)
		}
	}
	if names, err := b.List(ctx, ""); err != nil || len(names) != 0 {
		t.Errorf("invalid names created objects: %v, %v", names, err)
	}
}

func TestS3BackendListAndDelete(t *testing.T) {
	ctx := context.Background()
	b, srv := newS3(t, "deploy-a/snapshots")
	names := []string{"b/2", "a/manifest.json", "b/1", "a/x.sst", "ab/1", "top"}
	for _, n := range names {
		if err := b.Put(ctx, n, strings.NewReader(n)); err != nil {
			t.Fatal(err)
		}
	}
	// Objects outside the prefix (another deployment's, or one that merely
	// shares the prefix's first characters) are not this backend's.
	other := s3On(t, srv, "deploy-a/snapshots-old", false)
	if err := other.Put(ctx, "a/manifest.json", strings.NewReader("other")); err != nil {
		t.Fatal(err)
	}
	root := s3On(t, srv, "", false)
	if err := root.Put(ctx, "top", strings.NewReader("root")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a/manifest.json", "a/x.sst", "ab/1", "b/1", "b/2", "top"}},
		{"a", []string{"a/manifest.json", "a/x.sst", "ab/1"}},
		{"a/", []string{"a/manifest.json", "a/x.sst"}},
		{"b/2", []string{"b/2"}},
		{"missing/", nil},
	}
	for _, tt := range tests {
		got, err := b.List(ctx, tt.prefix)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) = %v, %v; want %v (sorted)", tt.prefix, got, err, tt.want)
		}
	}
	if got, err := get(t, b, "top"); err != nil || string(got) != "top" {
		t.Errorf("Get(top) = %q, %v; want this prefix's object", got, err)
	}
	for _, n := range []string{"b/1", "b/2", "b/2"} { // deleting twice is fine
		if err := b.Delete(ctx, n); err != nil {
			t.Fatalf("Delete(%s) = %v", n, err)
		}
	}
	if got, _ := b.List(ctx, ""); !slices.Equal(got, []string{"a/manifest.json", "a/x.sst", "ab/1", "top"}) {
		t.Errorf("after deletes List = %v", got)
	}
	if got, err := get(t, other, "a/manifest.json"); err != nil || string(got) != "other" {
		t.Errorf("the other prefix's object = %q, %v", got, err)
	}
}

// A reader fails on a missing bucket (a typo must not read as "no
// snapshots"); the writer creates it.
func TestS3BackendMissingBucket(t *testing.T) {
	srv := s3server.Start(t)
	env := srv.Env()
	o, err := S3OptionsFromEnv("s3://not-created-yet/x", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewS3Backend(context.Background(), o, false); !errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), "not-created-yet") {
		t.Fatalf("reader on a missing bucket: %v, want ErrNotExist naming the bucket", err)
	}
	if _, err := NewS3Backend(context.Background(), o, true); err != nil {
		t.Fatalf("writer: %v", err)
	}
	if _, err := NewS3Backend(context.Background(), o, false); err != nil {
		t.Fatalf("reader after the writer created the bucket: %v", err)
	}
	o.SecretAccessKey = "wrong"
	if _, err := NewS3Backend(context.Background(), o, false); err == nil {
		t.Fatal("a wrong secret key was accepted")
	}
}

// A snapshot written through one backend is read back, byte for byte,
// through another (another machine), including an SST large enough for a
// multipart upload.
func TestS3StoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	b, srv := newS3(t, "snaps")
	w := NewStore(b, 5)
	small := genPartition("tx", 0, 500, 1)
	large := genPartition("tx", 1, 120_000, 2) // ~12 MiB of random values: three parts
	m, err := w.Write(ctx, Manifest{Worker: "worker-1", FeatureLog: []LogPartition{{Partition: 0, Offset: 42}}},
		[]PartitionData{part("tx", 0, 500, 7, small), part("tx", 1, 120_000, 8, large)})
	if err != nil {
		t.Fatal(err)
	}
	sst, _ := m.fileRef(sstName("tx", 1))
	if sst.Size <= 2*MinS3PartSize {
		t.Fatalf("the large SST is %d bytes: too small to need three parts", sst.Size)
	}

	r := NewStore(s3On(t, srv, "snaps", false), 5)
	ms, problems, err := r.List(ctx)
	if err != nil || len(problems) != 0 || len(ms) != 1 || ms[0].ID != m.ID {
		t.Fatalf("List = %v, %v, %v; want the one snapshot", ids(ms), problems, err)
	}
	if err := r.Verify(ctx, ms[0]); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := map[TopicPartition][]kv{{"tx", 0}: small, {"tx", 1}: large}
	chosen, problems, err := r.Newest(ctx, []TopicPartition{{"tx", 0}, {"tx", 1}}, nil)
	if err != nil || len(problems) != 0 || len(chosen) != 2 {
		t.Fatalf("Newest = %v, %v, %v", chosen, problems, err)
	}
	for tp, c := range chosen {
		if got := readAll(t, r, c.Manifest, c.Source.File); !equalPairs(got, want[tp]) {
			t.Errorf("%s: read %d pairs back, not the %d written", tp, len(got), len(want[tp]))
		}
	}
	if ms[0].FeatureLog[0].Offset != 42 || ms[0].Worker != "worker-1" {
		t.Errorf("manifest read back: %+v", ms[0])
	}
}

// A damaged object (bit rot behind the server's back, or an object
// replaced by a short one) is rejected with an error naming the snapshot
// and file, and the partition falls back to the previous snapshot.
func TestS3CorruptObjectFallsBackToAnOlderSnapshot(t *testing.T) {
	ctx := context.Background()
	a0, b0 := TopicPartition{"a", 0}, TopicPartition{"b", 0}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, b *S3Backend, srv *s3server.Server, obj string)
	}{
		{"a flipped byte in the stored file", func(t *testing.T, b *S3Backend, srv *s3server.Server, obj string) {
			path := filepath.Join(srv.Root, testBucket, filepath.FromSlash(b.key(obj)))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("the posix backend's file of %s: %v", obj, err)
			}
			data[len(data)/2] ^= 0x40
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"an object replaced by a truncated copy", func(t *testing.T, b *S3Backend, _ *s3server.Server, obj string) {
			data, err := get(t, b, obj)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Put(ctx, obj, bytes.NewReader(data[:len(data)-10])); err != nil {
				t.Fatal(err)
			}
		}},
		{"a missing object", func(t *testing.T, b *S3Backend, _ *s3server.Server, obj string) {
			if err := b.Delete(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, srv := newS3(t, "corrupt")
			s := NewStore(b, 5)
			older := writeSnap(t, s, "w", 0, a0, b0)
			newer := writeSnap(t, s, "w", 1, a0, b0)
			damaged := newer.Object(sstName("a", 0))
			tc.damage(t, b, srv, damaged)

			err := s.Verify(ctx, newer)
			var ce *CorruptError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.ID != newer.ID || ce.File != "a-0.sst" {
				t.Fatalf("Verify = %v; want a CorruptError naming %s and a-0.sst", err, newer.ID)
			}
			chosen, problems, err := s.Newest(ctx, []TopicPartition{a0, b0}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := chosen[a0].Manifest; got == nil || got.ID != older.ID {
				t.Fatalf("a/0 chose %v, want the older snapshot %s", got, older.ID)
			}
			if got := chosen[b0].Manifest; got == nil || got.ID != newer.ID {
				t.Fatalf("b/0 chose %v, want the newer snapshot %s (its SST is intact)", got, newer.ID)
			}
			if len(problems) != 1 || problems[0].ID != newer.ID || problems[0].File != "a-0.sst" || !errors.Is(problems[0], ErrCorrupt) {
				t.Fatalf("problems = %v; want one naming %s a-0.sst", problems, newer.ID)
			}
			if err := s.Read(ctx, newer, "a-0.sst", func(k, v []byte) error {
				t.Fatal("Read handed out a pair of a corrupt file")
				return nil
			}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Read of the damaged file = %v, want ErrCorrupt", err)
			}
			if got := readAll(t, s, older, "a-0.sst"); !equalPairs(got, genPartition("a", 0, 100, 0)) {
				t.Fatal("the older snapshot's data differs from what was written")
			}
		})
	}

	t.Run("a garbled manifest is a problem, not a snapshot", func(t *testing.T) {
		b, _ := newS3(t, "")
		s := NewStore(b, 5)
		older := writeSnap(t, s, "w", 0, a0)
		newer := writeSnap(t, s, "w", 1, a0)
		if err := b.Put(ctx, newer.Object(ManifestName), strings.NewReader(`{"format": 1, "id": `)); err != nil {
			t.Fatal(err)
		}
		ms, problems, err := s.List(ctx)
		if err != nil || !slices.Equal(ids(ms), []string{older.ID}) || len(problems) != 1 || problems[0].ID != newer.ID {
			t.Fatalf("List = %v, %v, %v; want only %s and a problem naming %s", ids(ms), problems, err, older.ID, newer.ID)
		}
	})
}

// A Write cancelled while an SST is being uploaded leaves nothing at all:
// no snapshot, no object, no incomplete upload.
func TestS3WriteCancelledMidUploadLeavesNothing(t *testing.T) {
	b, _ := newS3(t, "")
	s := NewStore(&cancellingBackend{Backend: b, after: MinS3PartSize + 1}, 5)
	ctx, cancel := context.WithCancel(context.Background())
	s.b.(*cancellingBackend).cancel = cancel
	_, err := s.Write(ctx, Manifest{Worker: "w"}, []PartitionData{
		part("a", 0, 1, 1, genPartition("a", 0, 100, 1)),
		part("b", 0, 1, 1, genPartition("b", 0, 100_000, 2)), // ~10 MiB: multipart
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Write = %v, want context.Canceled", err)
	}
	if names, err := b.List(context.Background(), ""); err != nil || len(names) != 0 {
		t.Fatalf("objects left behind: %v, %v", names, err)
	}
	if ups := incompleteUploads(t, b); len(ups) != 0 {
		t.Fatalf("incomplete uploads left behind: %v", ups)
	}
}

// cancellingBackend cancels once a Put has read more than after bytes.
type cancellingBackend struct {
	Backend
	after  int
	cancel context.CancelFunc
}

func (c *cancellingBackend) Put(ctx context.Context, name string, r io.Reader) error {
	n := 0
	return c.Backend.Put(ctx, name, readerFunc(func(p []byte) (int, error) {
		m, err := r.Read(p)
		if n += m; n > c.after {
			c.cancel()
		}
		return m, err
	}))
}

// A worker killed (SIGKILL) in the middle of a multipart upload leaves a
// snapshot no reader trusts: readers see only the previous snapshot. Its
// leftovers (an SST without a manifest, an incomplete upload) are left
// alone while they could be a Write in progress and removed by Prune after
// the grace period.
func TestS3KilledMidUploadLeavesNothingTrusted(t *testing.T) {
	ctx := context.Background()
	a0, b0 := TopicPartition{"a", 0}, TopicPartition{"b", 0}
	b, srv := newS3(t, "killed")
	s := NewStore(b, 5)
	s.now = time.Now
	before, err := s.Write(ctx, Manifest{Worker: "w"}, []PartitionData{
		part("a", 0, 10, 1, genPartition("a", 0, 100, 1)), part("b", 0, 10, 1, genPartition("b", 0, 100, 1))})
	if err != nil {
		t.Fatal(err)
	}

	// The helper writes a snapshot whose b/0 SST (~10 MiB) is a multipart
	// upload, and blocks after the first part: then it is killed.
	killedID := NewID("killed", time.Now())
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "FEATUREPIPE_S3_HELPER=1", "HELPER_SNAPSHOT_ID="+killedID)
	for k, v := range srv.Env() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "HELPER: blocked mid-upload" {
				blocked <- true
				break
			}
		}
		blocked <- false
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case ok := <-blocked:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("the helper ended without blocking mid-upload:\n%s", stderr.String())
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the helper did not reach the middle of its upload within 2 minutes:\n%s", stderr.String())
	}
	if ups := incompleteUploads(t, b); !slices.Equal(ups, []string{"killed/" + killedID + "/b-0.sst"}) {
		_ = cmd.Process.Kill()
		t.Fatalf("incomplete uploads while the helper is blocked: %v; want the one of b-0.sst", ups)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// What a reader sees: only the snapshot from before.
	r := NewStore(s3On(t, srv, "killed", false), 5)
	ms, problems, err := r.List(ctx)
	if err != nil || len(problems) != 0 || !slices.Equal(ids(ms), []string{before.ID}) {
		t.Fatalf("List = %v, %v, %v; want only %s", ids(ms), problems, err, before.ID)
	}
	chosen, problems, err := r.Newest(ctx, []TopicPartition{a0, b0}, nil)
	if err != nil || len(problems) != 0 || chosen[a0].Manifest.ID != before.ID || chosen[b0].Manifest.ID != before.ID {
		t.Fatalf("Newest = %v, %v, %v; want %s for both partitions", chosen, problems, err, before.ID)
	}
	// What is on the server: the a/0 SST uploaded before the kill, no b/0
	// object, and the incomplete upload of b/0.
	if names, _ := b.List(ctx, killedID+"/"); !slices.Equal(names, []string{killedID + "/a-0.sst"}) {
		t.Fatalf("objects of the killed write: %v; want its a-0.sst only", names)
	}

	// Prune now: all that may be a Write in progress, so nothing is touched.
	if deleted, err := s.Prune(ctx); err != nil || len(deleted) != 0 {
		t.Fatalf("Prune within the grace period = %v, %v; want nothing deleted", deleted, err)
	}
	if ups := incompleteUploads(t, b); len(ups) != 1 {
		t.Fatalf("Prune within the grace period aborted an upload that may be in progress: %v left", ups)
	}
	// A day later: the leftovers go, the valid snapshot stays.
	s.now = func() time.Time { return time.Now().Add(25 * time.Hour) }
	deleted, err := s.Prune(ctx)
	if err != nil || !slices.Equal(deleted, []string{killedID}) {
		t.Fatalf("Prune after the grace period = %v, %v; want %s deleted", deleted, err, killedID)
	}
	if ups := incompleteUploads(t, b); len(ups) != 0 {
		t.Fatalf("incomplete uploads after Prune: %v", ups)
	}
	names, _ := b.List(ctx, "")
	if want := []string{before.ID + "/a-0.sst", before.ID + "/b-0.sst", before.ID + "/" + ManifestName}; !slices.Equal(names, want) {
		t.Fatalf("left after Prune: %v, want %v", names, want)
	}
}

// TestMain runs the worker that TestS3KilledMidUploadLeavesNothingTrusted
// kills when started as its child process, the tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv("FEATUREPIPE_S3_HELPER") != "" {
		err := killedWriter()
		fmt.Fprintf(os.Stderr, "the helper's Write returned (%v); it should have blocked until killed\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// killedWriter writes a snapshot whose second SST blocks mid-upload.
func killedWriter() error {
	o, err := S3OptionsFromEnv(S3Scheme+testBucket+"/killed", os.Getenv)
	if err != nil {
		return err
	}
	o.PartSize = MinS3PartSize
	b, err := NewS3Backend(context.Background(), o, true)
	if err != nil {
		return err
	}
	s := NewStore(&blockingBackend{Backend: b, after: MinS3PartSize + 1}, 5)
	_, err = s.Write(context.Background(), Manifest{ID: os.Getenv("HELPER_SNAPSHOT_ID"), Worker: "killed"}, []PartitionData{
		part("a", 0, 20, 2, genPartition("a", 0, 100, 2)),
		part("b", 0, 20, 2, genPartition("b", 0, 100_000, 2)),
	})
	return err
}

// blockingBackend blocks a Put forever once it has read more than after
// bytes (the first part has been uploaded by then).
type blockingBackend struct {
	Backend
	after int
}

func (bb *blockingBackend) Put(ctx context.Context, name string, r io.Reader) error {
	n := 0
	return bb.Backend.Put(ctx, name, readerFunc(func(p []byte) (int, error) {
		m, err := r.Read(p)
		if n += m; n > bb.after {
			fmt.Println("HELPER: blocked mid-upload")
			time.Sleep(time.Hour) // until killed (a sleeper is no deadlock)
		}
		return m, err
	}))
}

// Retention works as on a directory: Prune keeps the newest snapshots of
// each partition and removes every object of the others.
func TestS3Prune(t *testing.T) {
	ctx := context.Background()
	a0 := TopicPartition{"a", 0}
	b, _ := newS3(t, "retained")
	s := NewStore(b, 2)
	var all []*Manifest
	for i := range 4 {
		all = append(all, writeSnap(t, s, "w", i, a0))
	}
	deleted, err := s.Prune(ctx)
	if err != nil || !slices.Equal(deleted, []string{all[0].ID, all[1].ID}) {
		t.Fatalf("Prune = %v, %v; want the two oldest", deleted, err)
	}
	names, _ := b.List(ctx, "")
	var want []string
	for _, m := range all[2:] {
		want = append(want, m.ID+"/a-0.sst", m.ID+"/"+ManifestName)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("left %v, want %v", names, want)
	}
}

func TestS3OptionsFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	yes, no := true, false
	tests := []struct {
		name    string
		url     string
		getenv  func(string) string
		want    S3Options
		wantErr string
	}{
		{"bucket and prefix, everything from the environment", "s3://feature-snaps/prod/eu/",
			env("AWS_ENDPOINT_URL", "http://s3.local:7070", "AWS_REGION", "eu-west-1", "AWS_ACCESS_KEY_ID", "AK", "AWS_SECRET_ACCESS_KEY", "SK", "AWS_SESSION_TOKEN", "T", "AWS_CA_BUNDLE", "/ca.pem"),
			S3Options{Bucket: "feature-snaps", Prefix: "prod/eu", Endpoint: "http://s3.local:7070", Region: "eu-west-1", AccessKeyID: "AK", SecretAccessKey: "SK", SessionToken: "T", CABundle: "/ca.pem"}, ""},
		{"the S3-specific endpoint and AWS_DEFAULT_REGION", "s3://bkt",
			env("AWS_ENDPOINT_URL", "http://generic", "AWS_ENDPOINT_URL_S3", "https://s3-only", "AWS_DEFAULT_REGION", "us-west-2"),
			S3Options{Bucket: "bkt", Endpoint: "https://s3-only", Region: "us-west-2"}, ""},
		{"path style forced", "s3://bkt/x", env("AWS_S3_USE_PATH_STYLE", "true"), S3Options{Bucket: "bkt", Prefix: "x", PathStyle: &yes}, ""},
		{"virtual-hosted forced", "s3://bkt/x", env("AWS_S3_USE_PATH_STYLE", "false"), S3Options{Bucket: "bkt", Prefix: "x", PathStyle: &no}, ""},
		{"part size", "s3://bkt", env("FEATUREPIPE_S3_PART_SIZE_MIB", "64"), S3Options{Bucket: "bkt", PartSize: 64 << 20}, ""},
		{"part size below S3's minimum", "s3://bkt", env("FEATUREPIPE_S3_PART_SIZE_MIB", "4"), S3Options{}, "FEATUREPIPE_S3_PART_SIZE_MIB"},
		{"bad path style", "s3://bkt", env("AWS_S3_USE_PATH_STYLE", "yes please"), S3Options{}, "AWS_S3_USE_PATH_STYLE"},
		{"not an s3 URL", "/var/snapshots", env(), S3Options{}, "want s3://bucket"},
		{"no bucket", "s3:///prefix", env(), S3Options{}, "bucket"},
		{"an invalid bucket", "s3://Bad_Bucket/x", env(), S3Options{}, "bucket"},
		{"a '..' in the prefix", "s3://bkt/a/../b", env(), S3Options{}, "invalid prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := S3OptionsFromEnv(tt.url, tt.getenv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.PathStyle != nil && *got.PathStyle) != fmt.Sprint(tt.want.PathStyle != nil && *tt.want.PathStyle) || (got.PathStyle == nil) != (tt.want.PathStyle == nil) {
				t.Fatalf("PathStyle = %v, want %v", got.PathStyle, tt.want.PathStyle)
			}
			got.PathStyle, tt.want.PathStyle = nil, nil
			if got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNewS3BackendRejectsBadOptions(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    S3Options
		want string
	}{
		{"no credentials", S3Options{Bucket: "bkt", Endpoint: "http://127.0.0.1:1"}, "AWS_ACCESS_KEY_ID"},
		{"half the credentials", S3Options{Bucket: "bkt", Endpoint: "http://127.0.0.1:1", AccessKeyID: "x"}, "AWS_SECRET_ACCESS_KEY"},
		{"an endpoint that is not a URL", S3Options{Bucket: "bkt", Endpoint: "127.0.0.1:7070", AccessKeyID: "a", SecretAccessKey: "s"}, "want http://host"},
		{"a part size below 5 MiB", S3Options{Bucket: "bkt", Endpoint: "http://127.0.0.1:1", AccessKeyID: "a", SecretAccessKey: "s", PartSize: 1 << 20}, "part size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
			if _, err := NewS3Backend(ctx, tc.o, false); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// A body damaged on its way to the server (a flipped bit between client
// and server) is refused by the server, from the checksums each request
// carries: nothing is stored under the name.
func TestS3BackendBodyDamagedInTransitIsRefused(t *testing.T) {
	srv := s3server.Start(t)
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var damaged atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	director := proxy.Director
	proxy.Director = func(r *http.Request) {
		director(r)
		if r.Method != http.MethodPut || r.Body == nil || r.ContentLength < 1000 {
			return
		}
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return
		}
		body[len(body)/2] ^= 0x01
		damaged.Add(1)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	front := httptest.NewServer(proxy)
	defer front.Close()
	env := srv.Env()
	env["AWS_ENDPOINT_URL"] = front.URL
	o, err := S3OptionsFromEnv(S3Scheme+testBucket+"/transit", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	o.PartSize, o.MaxRetries = MinS3PartSize, 1
	b, err := NewS3Backend(context.Background(), o, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{64 << 10, 2*MinS3PartSize + 1} { // one PUT; multipart
		name := fmt.Sprintf("snap/%d.sst", size)
		before := damaged.Load()
		err := b.Put(context.Background(), name, bytes.NewReader(randomBytes(size, 9)))
		if damaged.Load() == before {
			t.Fatalf("%d bytes: the proxy damaged no request", size)
		}
		if err == nil {
			t.Fatalf("%d bytes: a Put whose body was damaged in transit succeeded", size)
		}
		if _, gerr := get(t, b, name); !errors.Is(gerr, ErrNotExist) {
			t.Fatalf("%d bytes: after the refused Put, Get = %v; want ErrNotExist", size, gerr)
		}
		t.Logf("%d bytes: %v", size, err)
	}
	if ups := incompleteUploads(t, b); len(ups) != 0 {
		t.Fatalf("incomplete uploads left behind: %v", ups)
	}
}
