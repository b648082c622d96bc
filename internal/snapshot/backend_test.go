package snapshot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func newDir(t *testing.T) *DirBackend {
	t.Helper()
	b, err := NewDirBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func get(t *testing.T, b Backend, name string) ([]byte, error) {
	t.Helper()
	r, err := b.Get(context.Background(), name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// failingReader returns its data up to failAt bytes, then an error.
type failingReader struct {
	data   []byte
	failAt int
	off    int
}

var errReader = errors.New("reader broke")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.off >= f.failAt {
		return 0, errReader
	}
	n := copy(p, f.data[f.off:f.failAt])
	f.off += n
	return n, nil
}

// allFiles lists every file under dir, temporary ones included.
func allFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDirBackendPut(t *testing.T) {
	ctx := context.Background()
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: several copy buffers
	tests := []struct {
		name     string
		before   []byte // existing content under the name, if any
		r        io.Reader
		wantErr  error
		wantData []byte // expected content after Put (nil: absent)
	}{
		{"a complete put is visible whole", nil, bytes.NewReader(big), nil, big},
		{"a reader failing halfway leaves nothing visible", nil, &failingReader{data: big, failAt: len(big) / 2}, errReader, nil},
		{"a reader failing halfway keeps the previous version", []byte("old"), &failingReader{data: big, failAt: len(big) / 2}, errReader, []byte("old")},
		{"a put replaces the previous version", []byte("old"), bytes.NewReader([]byte("new")), nil, []byte("new")},
		{"an empty object is an object", nil, bytes.NewReader(nil), nil, []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newDir(t)
			const name = "snap-1/file.sst"
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
				if !errors.Is(gerr, ErrNotExist) || !errors.Is(gerr, fs.ErrNotExist) {
					t.Fatalf("Get after failed Put: err = %v, want ErrNotExist and fs.ErrNotExist", gerr)
				}
			} else if gerr != nil || !bytes.Equal(got, tt.wantData) {
				t.Fatalf("Get = %d bytes, %v; want %d bytes", len(got), gerr, len(tt.wantData))
			}
			// No temporary file survives, whatever happened.
			for _, f := range allFiles(t, b.Dir()) {
				if strings.Contains(f, ".tmp-") {
					t.Errorf("temporary file left behind: %s", f)
				}
			}
		})
	}
}

func TestDirBackendPutCancelled(t *testing.T) {
	b := newDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := io.MultiReader(strings.NewReader("first part, "), readerFunc(func(p []byte) (int, error) {
		cancel()
		return copy(p, "second part"), nil
	}), strings.NewReader("third part"))
	if err := b.Put(ctx, "x/y", r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
	if _, err := get(t, b, "x/y"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Get after cancelled Put = %v, want ErrNotExist", err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestDirBackendNames(t *testing.T) {
	ctx := context.Background()
	b := newDir(t)
	for _, name := range []string{"", ".", "/abs", "a/../b", "a//b", "../escape", ".hidden", "a/.tmp", "a/b/"} {
		if err := b.Put(ctx, name, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) succeeded, want an invalid-name error", name)
		}
		if _, err := b.Get(ctx, name); err == nil || errors.Is(err, ErrNotExist) {
			t.Errorf("Get(%q) = %v, want an invalid-name error", name, err)
		}
	}
	if files := allFiles(t, filepath.Dir(b.Dir())); len(files) != 0 {
		t.Errorf("invalid names created files: %v", files)
	}
}

func TestDirBackendListAndDelete(t *testing.T) {
	ctx := context.Background()
	b := newDir(t)
	names := []string{"b/2", "a/manifest.json", "b/1", "a/x.sst", "ab/1", "top"}
	for _, n := range names {
		if err := b.Put(ctx, n, strings.NewReader(n)); err != nil {
			t.Fatal(err)
		}
	}
	// A leftover temporary file of a crashed Put is not an object.
	if err := os.WriteFile(filepath.Join(b.Dir(), "a", ".x.sst.tmp-123"), []byte("partial"), 0o644); err != nil {
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

	for _, n := range []string{"b/1", "b/2", "b/2"} { // deleting twice is fine
		if err := b.Delete(ctx, n); err != nil {
			t.Fatalf("Delete(%s) = %v", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(b.Dir(), "b")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("directory emptied by Delete still exists: %v", err)
	}
	if err := b.Delete(ctx, "a/x.sst"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.Dir(), "a")); err != nil {
		t.Errorf("non-empty directory removed by Delete: %v", err)
	}
	if got, _ := b.List(ctx, ""); !slices.Equal(got, []string{"a/manifest.json", "ab/1", "top"}) {
		t.Errorf("after deletes List = %v", got)
	}
}
