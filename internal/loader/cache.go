package loader

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
)

// ErrDigest means bytes did not hash to the digest they were fetched for.
var ErrDigest = errors.New("artifact digest mismatch")

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Cache is a scorer's local, content-addressed directory of verified artifacts:
// DIR/sha256/<hex>.onnx. A file only ever appears there whole and verified.
type Cache struct {
	Dir string
}

// Open creates the cache directories.
func (c *Cache) Open() error {
	for _, d := range []string{filepath.Join(c.Dir, "sha256"), filepath.Join(c.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("artifact cache: %w", err)
		}
	}
	// Partial downloads of a previous run are never used.
	old, _ := filepath.Glob(filepath.Join(c.Dir, "tmp", "*"))
	for _, p := range old {
		os.Remove(p)
	}
	return nil
}

// Path is where the artifact with digest lives in the cache.
func (c *Cache) Path(digest string) (string, error) {
	if !hexDigest.MatchString(digest) {
		return "", fmt.Errorf("%w: %q is not a sha256", ErrDigest, digest)
	}
	return filepath.Join(c.Dir, "sha256", digest+".onnx"), nil
}

// Lookup returns the path of a cached artifact after re-hashing it; a file that no
// longer matches its name is removed and reported as absent.
func (c *Cache) Lookup(digest string) (string, bool) {
	p, err := c.Path(digest)
	if err != nil {
		return "", false
	}
	f, err := os.Open(p)
	if err != nil {
		return "", false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil || hex.EncodeToString(h.Sum(nil)) != digest {
		os.Remove(p)
		return "", false
	}
	return p, true
}

// Store writes r into the cache under digest, verifying the hash (and size when
// size ≥ 0) before the file takes its final name.
func (c *Cache) Store(digest string, size int64, r io.Reader) (string, error) {
	final, err := c.Path(digest)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Join(c.Dir, "tmp"), digest[:16]+"-*")
	if err != nil {
		return "", fmt.Errorf("artifact cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", digest[:12], err)
	}
	if size >= 0 && n != size {
		return "", fmt.Errorf("%w: got %d bytes of %s, want %d", ErrDigest, n, digest[:12], size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return "", fmt.Errorf("%w: downloaded bytes hash to %s, want %s", ErrDigest, got, digest)
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", err
	}
	return final, nil
}
