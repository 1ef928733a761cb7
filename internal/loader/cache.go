package loader

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/modelops/modelops/internal/artifact"
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

// CachedDeployment is the deployment a scorer served last, kept beside the
// artifacts so a restarted scorer serves it at once, even with no control plane.
type CachedDeployment struct {
	Model     string             `json:"model"`
	Version   int                `json:"version"`
	Digest    string             `json:"digest"`
	Signature artifact.Signature `json:"signature"`
	Card      json.RawMessage    `json:"card,omitempty"`
	// Recent lists the digests served, newest last; the cache keeps these files.
	Recent []string `json:"recent"`
}

var modelNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (c *Cache) deploymentPath(model string) (string, error) {
	if !modelNameRE.MatchString(model) {
		return "", fmt.Errorf("artifact cache: invalid model name %q", model)
	}
	return filepath.Join(c.Dir, "deployments", model+".json"), nil
}

// SaveDeployment records d as the last deployment of its model and removes the
// cached artifacts of that model beyond the newest keep.
func (c *Cache) SaveDeployment(d CachedDeployment, keep int) error {
	p, err := c.deploymentPath(d.Model)
	if err != nil {
		return err
	}
	if prev, err := c.LoadDeployment(d.Model); err == nil {
		d.Recent = prev.Recent
	}
	d.Recent = append(slices.DeleteFunc(d.Recent, func(s string) bool { return s == d.Digest }), d.Digest)
	var drop []string
	if keep > 0 && len(d.Recent) > keep {
		drop = d.Recent[:len(d.Recent)-keep]
		d.Recent = d.Recent[len(d.Recent)-keep:]
	}
	buf, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	for _, digest := range drop {
		if fp, err := c.Path(digest); err == nil {
			os.Remove(fp)
		}
	}
	return nil
}

// LoadDeployment returns the last deployment saved for model.
func (c *Cache) LoadDeployment(model string) (*CachedDeployment, error) {
	p, err := c.deploymentPath(model)
	if err != nil {
		return nil, err
	}
	buf, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	d := &CachedDeployment{}
	if err := json.Unmarshal(buf, d); err != nil {
		return nil, fmt.Errorf("artifact cache: %s: %w", p, err)
	}
	return d, nil
}

// Deployments names the models the cache holds a last deployment of.
func (c *Cache) Deployments() []string {
	entries, err := os.ReadDir(filepath.Join(c.Dir, "deployments"))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok && modelNameRE.MatchString(name) {
			names = append(names, name)
		}
	}
	return names
}
