// Package fileblob is the blob store in a local directory (file:///DIR):
// DIR/blobs/sha256/<hex>, written through DIR/tmp with fsync and rename.
package fileblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/modelops/modelops/internal/registry"
)

func init() {
	registry.RegisterBlobDriver("file", func(_ context.Context, u *url.URL) (registry.BlobStore, error) {
		p := u.Path
		if u.Host != "" && u.Host != "localhost" {
			// file://relative/dir is a common slip; take it as relative.
			p = filepath.Join(u.Host, u.Path)
		}
		if p == "" {
			return nil, registry.Invalidf("file blob store URL needs a path")
		}
		return New(p)
	})
}

// Store keeps blobs under a local directory:
// DIR/blobs/sha256/<hex>, written through DIR/tmp with fsync and rename.
type Store struct {
	root string
}

var _ registry.BlobStore = (*Store)(nil)

// New opens (creating if needed) a file store rooted at dir.
func New(dir string) (*Store, error) {
	for _, d := range []string{filepath.Join(dir, "blobs", "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("file blob store: %w", err)
		}
	}
	return &Store{root: dir}, nil
}

func (s *Store) String() string { return "file://" + s.root }

func (s *Store) path(digest string) (string, error) {
	k, err := registry.BlobKey(digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(k)), nil
}

// Put writes to a temp file, verifies, fsyncs, renames into place and fsyncs the
// directory, so a crash leaves either the whole blob or none under its key.
func (s *Store) Put(ctx context.Context, digest string, size int64, r io.Reader) error {
	final, err := s.path(digest)
	if err != nil {
		return err
	}
	if _, err := os.Stat(final); err == nil {
		return s.confirm(ctx, digest, size)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.root, "tmp"), digest[:16]+"-*")
	if err != nil {
		return fmt.Errorf("put blob %s: %w", digest, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := io.Copy(tmp, &registry.CtxReader{Ctx: ctx, R: registry.NewVerifyingReader(r, digest, size)}); err != nil {
		return fmt.Errorf("put blob %s: %w", digest, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("put blob %s: %w", digest, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("put blob %s: %w", digest, err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("put blob %s: %w", digest, err)
	}
	return syncDir(filepath.Dir(final))
}

// confirm checks that an existing blob really holds digest, so a damaged blob is
// not silently taken for the new upload.
func (s *Store) confirm(ctx context.Context, digest string, size int64) error {
	rc, _, err := s.Open(ctx, digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, registry.NewVerifyingReader(rc, digest, size)); err != nil {
		return fmt.Errorf("existing blob %s is damaged: %w", digest, err)
	}
	return nil
}

func (s *Store) Open(_ context.Context, digest string) (io.ReadCloser, int64, error) {
	p, err := s.path(digest)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("blob %s: %w", digest, registry.ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("blob %s: %w", digest, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("blob %s: %w", digest, err)
	}
	return f, st.Size(), nil
}

func (s *Store) Stat(_ context.Context, digest string) (int64, error) {
	p, err := s.path(digest)
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("blob %s: %w", digest, registry.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", digest, err)
	}
	return st.Size(), nil
}

func (s *Store) Delete(_ context.Context, digest string) error {
	p, err := s.path(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	return syncDir(filepath.Dir(p))
}

func (s *Store) List(_ context.Context) ([]registry.BlobInfo, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "blobs", "sha256"))
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	var out []registry.BlobInfo
	for _, e := range entries {
		if registry.CheckDigest(e.Name()) != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, registry.BlobInfo{Digest: e.Name(), Size: info.Size(), ModTime: info.ModTime()})
	}
	return out, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var _ registry.ObjectStore = (*Store)(nil)

func (s *Store) objectPath(key string) (string, error) {
	if err := registry.CheckObjectKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// PutObject writes through DIR/tmp with fsync and rename (then fsyncs the
// directory), so a crash leaves the whole object or none; an existing key is
// a conflict.
func (s *Store) PutObject(_ context.Context, key string, body []byte) error {
	final, err := s.objectPath(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return fmt.Errorf("put object %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "object-*")
	if err != nil {
		return fmt.Errorf("put object %s: %w", key, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := tmp.Write(body); err != nil {
		return fmt.Errorf("put object %s: %w", key, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("put object %s: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("put object %s: %w", key, err)
	}
	// A hard link fails if the key exists, so an object is never replaced.
	if err := os.Link(tmp.Name(), final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("put object %s: %w: already stored", key, registry.ErrConflict)
		}
		return fmt.Errorf("put object %s: %w", key, err)
	}
	return syncDir(filepath.Dir(final))
}

func (s *Store) GetObject(_ context.Context, key string) ([]byte, error) {
	p, err := s.objectPath(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("object %s: %w", key, registry.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", key, err)
	}
	defer f.Close()
	return registry.ReadObject(f, key)
}

func (s *Store) ListObjects(_ context.Context, prefix string) ([]registry.ObjectInfo, error) {
	if err := registry.CheckObjectKey(prefix); err != nil {
		return nil, err
	}
	var out []registry.ObjectInfo
	// Walk the deepest directory the prefix names, then filter by the prefix.
	dir := prefix
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir = prefix[:i]
	}
	root := filepath.Join(s.root, filepath.FromSlash(dir))
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		out = append(out, registry.ObjectInfo{Key: key, Size: info.Size(), ModTime: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list objects %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}
