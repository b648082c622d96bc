package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Backend is blob storage for snapshots: the only thing a storage backend
// implements (DirBackend: a directory; S3Backend: an S3-compatible bucket).
// Names are slash-separated relative paths ("<id>/manifest.json"); a name
// element never starts with '.', which backends may use for their own
// temporary objects.
//
// A Backend must be safe for concurrent use. Store relies on exactly these
// guarantees and nothing more (S3 provides all of them):
//   - Put is atomic: a reader sees the whole object or none of it, never a
//     prefix. Put of an existing name replaces it atomically.
//   - Get of an absent name returns an error matching ErrNotExist (or
//     fs.ErrNotExist).
//   - List returns the names starting with prefix, sorted; it may lag a
//     concurrent Put or Delete.
//   - Delete of an absent name is not an error.
type Backend interface {
	Put(ctx context.Context, name string, r io.Reader) error
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, name string) error
}

// DirBackend is a Backend on a local or shared (NFS) directory. Put writes a
// temporary file next to the target, fsyncs it, renames it into place and
// fsyncs the directory, so an object is durable once Put returns and a crash
// never leaves a partial object under its name. Temporary files of a Put
// interrupted by a crash stay behind as ".<name>.tmp-*"; List ignores them.
//
// Atomic rename is what makes Put atomic: on a shared filesystem that does
// not provide it (some FUSE mounts) use another backend.
type DirBackend struct {
	dir string
}

var _ Backend = (*DirBackend)(nil)

// NewDirBackend returns a DirBackend rooted at dir, creating it if needed.
func NewDirBackend(dir string) (*DirBackend, error) {
	if dir == "" {
		return nil, errors.New("snapshot: directory backend: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot: directory backend %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("snapshot: directory backend %s: %w", dir, err)
	}
	return &DirBackend{dir: abs}, nil
}

// Dir is the absolute root directory.
func (b *DirBackend) Dir() string { return b.dir }

// checkName rejects names that could escape the root or collide with
// temporary files.
func checkName(name string) error {
	if !fs.ValidPath(name) || name == "." {
		return fmt.Errorf("snapshot: invalid object name %q", name)
	}
	for _, el := range strings.Split(name, "/") {
		if strings.HasPrefix(el, ".") {
			return fmt.Errorf("snapshot: invalid object name %q: element starts with '.'", name)
		}
	}
	return nil
}

func (b *DirBackend) path(name string) string {
	return filepath.Join(b.dir, filepath.FromSlash(name))
}

// Put writes r to name atomically: temp file, fsync, rename, fsync of the
// directories up to the root. If r fails or ctx is cancelled nothing is
// visible under name and the temporary file is removed.
func (b *DirBackend) Put(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("snapshot: put %s: %w", name, err)
	}
	dst := b.path(name)
	dir := filepath.Dir(dst)
	f, err := b.createTemp(dir, filepath.Base(dst))
	if err != nil {
		return fmt.Errorf("snapshot: put %s: %w", name, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("snapshot: put %s: %w", name, err)
	}
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot: put %s: %w", name, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot: put %s: %w", name, err)
	}
	// Make the rename, and any directory created for it, durable.
	for d := dir; ; d = filepath.Dir(d) {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("snapshot: put %s: sync %s: %w", name, d, err)
		}
		if d == b.dir || len(d) <= len(b.dir) {
			break
		}
	}
	return nil
}

// createTemp creates a temporary file in dir, creating dir if needed. A
// concurrent Delete may remove an empty dir between MkdirAll and the create:
// then it tries once more.
func (b *DirBackend) createTemp(dir, base string) (*os.File, error) {
	var err error
	for range 2 {
		if err = os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		var f *os.File
		f, err = os.CreateTemp(dir, "."+base+".tmp-*")
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Get opens name for reading. The caller must Close it. An absent name
// returns an error matching ErrNotExist.
func (b *DirBackend) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("snapshot: get %s: %w", name, err)
	}
	f, err := os.Open(b.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot: get %s: %w", name, ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: get %s: %w", name, err)
	}
	return f, nil
}

// List returns the names of the objects starting with prefix, sorted. It
// walks only the directory the prefix names (all of it for prefix "");
// temporary files are skipped.
func (b *DirBackend) List(ctx context.Context, prefix string) ([]string, error) {
	root := b.dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		if !fs.ValidPath(prefix[:i]) {
			return nil, fmt.Errorf("snapshot: list %q: invalid prefix", prefix)
		}
		root = b.path(prefix[:i])
	}
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed under us, or the prefix directory does not exist
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(b.dir, p)
		if err != nil {
			return err
		}
		if name := filepath.ToSlash(rel); strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot: list %q in %s: %w", prefix, b.dir, err)
	}
	slices.Sort(names)
	return names, nil
}

// Delete removes name; an absent name is not an error. Directories left empty
// are removed too (best effort), so a pruned snapshot leaves nothing behind.
func (b *DirBackend) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("snapshot: delete %s: %w", name, err)
	}
	if err := os.Remove(b.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("snapshot: delete %s: %w", name, err)
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if os.Remove(b.path(dir)) != nil {
			break // not empty (or already gone): leave it
		}
	}
	return nil
}

// ctxReader stops a copy when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
