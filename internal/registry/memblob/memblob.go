// Package memblob is a blob store in memory (mem://), for tests and trials: it
// keeps the contract of every blob store and loses everything when the process
// ends.
package memblob

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/modelops/modelops/internal/registry"
)

func init() {
	registry.RegisterBlobDriver("mem", func(_ context.Context, u *url.URL) (registry.BlobStore, error) {
		if u.Host != "" || (u.Path != "" && u.Path != "/") {
			return nil, registry.Invalidf("mem blob store URL takes no name: mem://")
		}
		return New(), nil
	})
}

// Store keeps blobs in a map.
type Store struct {
	mu    sync.RWMutex
	blobs map[string]blob
}

type blob struct {
	data    []byte
	modTime time.Time
}

var _ registry.BlobStore = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{blobs: map[string]blob{}} }

func (s *Store) String() string { return "mem://" }

// Put reads the whole blob, verifying it, before anything is visible.
func (s *Store) Put(ctx context.Context, digest string, size int64, r io.Reader) error {
	if _, err := registry.BlobKey(digest); err != nil {
		return err
	}
	if _, err := s.Stat(ctx, digest); err == nil {
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
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, &registry.CtxReader{Ctx: ctx, R: registry.NewVerifyingReader(r, digest, size)}); err != nil {
		return fmt.Errorf("put blob %s: %w", digest, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[digest] = blob{data: buf.Bytes(), modTime: time.Now()}
	return nil
}

func (s *Store) Open(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if _, err := registry.BlobKey(digest); err != nil {
		return nil, 0, err
	}
	s.mu.RLock()
	b, ok := s.blobs[digest]
	s.mu.RUnlock()
	if !ok {
		return nil, 0, fmt.Errorf("blob %s: %w", digest, registry.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b.data)), int64(len(b.data)), nil
}

func (s *Store) Stat(ctx context.Context, digest string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if _, err := registry.BlobKey(digest); err != nil {
		return 0, err
	}
	s.mu.RLock()
	b, ok := s.blobs[digest]
	s.mu.RUnlock()
	if !ok {
		return 0, fmt.Errorf("blob %s: %w", digest, registry.ErrNotFound)
	}
	return int64(len(b.data)), nil
}

func (s *Store) Delete(ctx context.Context, digest string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := registry.BlobKey(digest); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.blobs, digest)
	return nil
}

func (s *Store) List(ctx context.Context) ([]registry.BlobInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]registry.BlobInfo, 0, len(s.blobs))
	for d, b := range s.blobs {
		out = append(out, registry.BlobInfo{Digest: d, Size: int64(len(b.data)), ModTime: b.modTime})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}
