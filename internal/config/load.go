package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/featurepipe/featurepipe/schemas"
)

// Load reads and validates the feature file at path on the operating
// system's file system. Schema paths in the file are resolved relative to
// the file's directory (absolute schema paths are used as they are).
//
// If the file cannot be read, Load returns a nil *File and the read error,
// wrapped with context (errors.Is(err, fs.ErrNotExist) holds for a missing
// file). On any problem in the file itself it returns a nil *File and either
// a *Error (one problem) or Errors (several, sorted by line); every problem
// in the file is reported, not just the first. A schema that cannot be read
// is a problem in the file, reported on its schema: line.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read feature file: %w", err)
	}
	return parse(path, data, diskSchemas(filepath.Dir(path)))
}

// LoadFS is Load over fsys: it reads the feature file at the slash-separated
// path p and resolves schema paths relative to path.Dir(p) inside fsys, for
// example LoadFS(schemas.Files, "demo.yaml"). Errors are as for Load: a
// wrapped read error when p cannot be read, else *Error or Errors.
func LoadFS(fsys fs.FS, p string) (*File, error) {
	data, err := fs.ReadFile(fsys, p)
	if err != nil {
		return nil, fmt.Errorf("read feature file: %w", err)
	}
	return Parse(p, data, fsys, path.Dir(p))
}

// Parse validates the feature file data. name identifies the file in error
// messages and becomes File.Path; schema paths are resolved relative to dir
// inside fsys and must stay inside it (no absolute paths, no "..").
// Parse reads no feature file, so every error it returns is a *Error or
// Errors, as for the problems Load reports.
func Parse(name string, data []byte, fsys fs.FS, dir string) (*File, error) {
	return parse(name, data, fsSchemas(fsys, dir))
}

func parse(name string, data []byte, load schemaLoader) (*File, error) {
	d := &decoder{file: name}
	root, ok := d.decodeYAML(data)
	if !ok {
		return nil, d.errs.result()
	}
	d.decodeFile(root)
	f := d.build(name, load)
	if err := d.errs.result(); err != nil {
		return nil, err
	}
	return f, nil
}

func fsSchemas(fsys fs.FS, dir string) schemaLoader {
	return func(rel string) (string, *schemas.Schema, error) {
		resolved := path.Join(dir, rel)
		if path.IsAbs(rel) || !fs.ValidPath(resolved) {
			return rel, nil, errors.New("the path must be relative to the feature file and stay below its directory")
		}
		if fsys == nil {
			return resolved, nil, errors.New("no file system to load schemas from")
		}
		s, err := schemas.Load(fsys, resolved)
		return resolved, s, trimLoadPrefix(err, resolved)
	}
}

func diskSchemas(dir string) schemaLoader {
	return func(rel string) (string, *schemas.Schema, error) {
		resolved := filepath.FromSlash(rel)
		if !filepath.IsAbs(resolved) {
			resolved = filepath.Join(dir, resolved)
		}
		s, err := schemas.Load(os.DirFS(filepath.Dir(resolved)), filepath.Base(resolved))
		return resolved, s, trimLoadPrefix(err, filepath.Base(resolved))
	}
}

// trimLoadPrefix drops the "load schema <path>: " that schemas.Load puts in
// front of its errors: our message names the resolved path already.
func trimLoadPrefix(err error, p string) error {
	if err == nil {
		return nil
	}
	if msg, ok := strings.CutPrefix(err.Error(), "load schema "+p+": "); ok {
		return errors.New(msg)
	}
	return err
}
