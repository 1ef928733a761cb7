package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// BlobStore keeps artifacts content-addressed by their sha256. Blobs are written
// once and never changed; a Put of a digest already present is a no-op after the
// stored bytes are confirmed.
type BlobStore interface {
	// Put stores size bytes from r under digest, verifying that they hash to it.
	// Nothing is visible under the final key unless the whole blob verified.
	Put(ctx context.Context, digest string, size int64, r io.Reader) error
	// Open returns the blob's bytes and size. Callers verify the digest as they read
	// (see VerifyingReader): the store does not promise the bytes are intact.
	Open(ctx context.Context, digest string) (io.ReadCloser, int64, error)
	// Stat returns the blob's size, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, digest string) (int64, error)
	// Delete removes a blob; deleting a missing blob is not an error.
	Delete(ctx context.Context, digest string) error
	// List returns every blob, sorted by digest.
	List(ctx context.Context) ([]BlobInfo, error)
	// String names the store for logs, without credentials.
	String() string
}

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
}

// BlobDriver opens a store from a parsed URL.
type BlobDriver func(ctx context.Context, u *url.URL) (BlobStore, error)

var (
	driversMu sync.Mutex
	drivers   = map[string]BlobDriver{}
)

// RegisterBlobDriver makes a URL scheme available to OpenBlobStore.
func RegisterBlobDriver(scheme string, d BlobDriver) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[scheme]; dup {
		panic("registry: blob driver registered twice: " + scheme)
	}
	drivers[scheme] = d
}

// OpenBlobStore opens a blob store by URL: file:///path or s3://bucket/prefix?….
func OpenBlobStore(ctx context.Context, rawURL string) (BlobStore, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, Invalidf("blob store URL %q: %v", rawURL, err)
	}
	driversMu.Lock()
	d, ok := drivers[u.Scheme]
	driversMu.Unlock()
	if !ok {
		return nil, Invalidf("blob store URL %q: unknown scheme %q (want file:///DIR or s3://BUCKET/PREFIX?…)", rawURL, u.Scheme)
	}
	return d(ctx, u)
}

func init() {
	RegisterBlobDriver("file", func(_ context.Context, u *url.URL) (BlobStore, error) {
		p := u.Path
		if u.Host != "" && u.Host != "localhost" {
			// file://relative/dir is a common slip; take it as relative.
			p = filepath.Join(u.Host, u.Path)
		}
		if p == "" {
			return nil, Invalidf("file blob store URL needs a path")
		}
		return NewFileStore(p)
	})
}

// blobKey is the one place that turns a digest into a key; it refuses anything
// that is not a sha256 so no caller input reaches a path unchecked.
func blobKey(digest string) (string, error) {
	if err := CheckDigest(digest); err != nil {
		return "", err
	}
	return "blobs/sha256/" + digest, nil
}

// VerifyingReader hashes what passes through it and, at EOF, fails with
// ErrDigestMismatch unless exactly size bytes hashing to digest went by.
type VerifyingReader struct {
	r      io.Reader
	digest string
	size   int64
	n      int64
	h      hashState
}

type hashState interface {
	io.Writer
	Sum([]byte) []byte
}

// NewVerifyingReader wraps r. A size below zero is not checked.
func NewVerifyingReader(r io.Reader, digest string, size int64) *VerifyingReader {
	return &VerifyingReader{r: r, digest: digest, size: size, h: sha256.New()}
}

func (v *VerifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	if v.size >= 0 && v.n > v.size {
		return n, fmt.Errorf("%w: more than the %d bytes stated", ErrDigestMismatch, v.size)
	}
	if err == io.EOF {
		if v.size >= 0 && v.n != v.size {
			return n, fmt.Errorf("%w: got %d bytes, %d stated", ErrDigestMismatch, v.n, v.size)
		}
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.digest {
			return n, fmt.Errorf("%w: content hashes to sha256 %s, %s stated", ErrDigestMismatch, got, v.digest)
		}
	}
	return n, err
}

// FileStore keeps blobs under a local directory:
// DIR/blobs/sha256/<hex>, written through DIR/tmp with fsync and rename.
type FileStore struct {
	root string
}

var _ BlobStore = (*FileStore)(nil)

// NewFileStore opens (creating if needed) a file store rooted at dir.
func NewFileStore(dir string) (*FileStore, error) {
	for _, d := range []string{filepath.Join(dir, "blobs", "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("file blob store: %w", err)
		}
	}
	return &FileStore{root: dir}, nil
}

func (s *FileStore) String() string { return "file://" + s.root }

func (s *FileStore) path(digest string) (string, error) {
	k, err := blobKey(digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(k)), nil
}

// Put writes to a temp file, verifies, fsyncs, renames into place and fsyncs the
// directory, so a crash leaves either the whole blob or none under its key.
func (s *FileStore) Put(ctx context.Context, digest string, size int64, r io.Reader) error {
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
	if _, err := io.Copy(tmp, &ctxReader{ctx, NewVerifyingReader(r, digest, size)}); err != nil {
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
func (s *FileStore) confirm(ctx context.Context, digest string, size int64) error {
	rc, _, err := s.Open(ctx, digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, NewVerifyingReader(rc, digest, size)); err != nil {
		return fmt.Errorf("existing blob %s is damaged: %w", digest, err)
	}
	return nil
}

func (s *FileStore) Open(_ context.Context, digest string) (io.ReadCloser, int64, error) {
	p, err := s.path(digest)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("blob %s: %w", digest, ErrNotFound)
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

func (s *FileStore) Stat(_ context.Context, digest string) (int64, error) {
	p, err := s.path(digest)
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("blob %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", digest, err)
	}
	return st.Size(), nil
}

func (s *FileStore) Delete(_ context.Context, digest string) error {
	p, err := s.path(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	return syncDir(filepath.Dir(p))
}

func (s *FileStore) List(_ context.Context) ([]BlobInfo, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "blobs", "sha256"))
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	var out []BlobInfo
	for _, e := range entries {
		if CheckDigest(e.Name()) != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, BlobInfo{Digest: e.Name(), Size: info.Size(), ModTime: info.ModTime()})
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

// ctxReader stops a copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
