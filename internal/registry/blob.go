package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
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

// OpenBlobStore opens a blob store by URL: file:///path, s3://bucket/prefix?…
// or mem:// (each from its driver package, linked in).
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

// BlobKey is the one place that turns a digest into a key (blobs/sha256/<hex>);
// it refuses anything that is not a sha256 so no caller input reaches a path or
// an object name unchecked. Every driver names its blobs with it.
func BlobKey(digest string) (string, error) {
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

// CtxReader stops a copy when its context is done.
type CtxReader struct {
	Ctx context.Context
	R   io.Reader
}

func (c *CtxReader) Read(p []byte) (int, error) {
	if err := c.Ctx.Err(); err != nil {
		return 0, err
	}
	return c.R.Read(p)
}

// ctxReader is CtxReader, for this package's own use.
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
