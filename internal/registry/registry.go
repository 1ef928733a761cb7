// Package registry is the system of record: models, their immutable versions, the
// aliases that say which version serves, and the history of every change, each
// change numbered by a registry-wide revision. Metadata lives in bbolt; artifacts
// live in a BlobStore addressed by sha256.
package registry

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/modelops/modelops/internal/artifact"
)

// Model is a named scoring function and where its aliases point.
type Model struct {
	Name      string             `json:"name"`
	Signature artifact.Signature `json:"signature"`
	CreatedAt time.Time          `json:"created_at"`
	// Revision is the registry revision of the model's last change.
	Revision uint64 `json:"revision"`
	// Production is the version serving all traffic; 0 when none is promoted.
	Production int `json:"production"`
	// Previous holds the versions production pointed at before, newest last; a
	// rollback without a target returns to the newest of them.
	Previous []int `json:"previous,omitempty"`
	// Latest is the highest version number assigned.
	Latest int `json:"latest"`
	// Candidate is the challenger, when a canary is set.
	Candidate *Canary `json:"candidate,omitempty"`
	// Blend is the weight of the model against its rules (nil: 1).
	Blend *float64 `json:"blend,omitempty"`
	// PromotedAt is when production last changed (the bake time counts from it).
	PromotedAt time.Time `json:"promoted_at,omitempty"`
	// Policy is the rollback policy (nil: DefaultPolicy).
	Policy *Policy `json:"policy,omitempty"`
	// Rejected maps versions the monitor rolled back to why; they are not promoted
	// again without force.
	Rejected map[int]string `json:"rejected,omitempty"`
}

// Version is one immutable artifact of a model.
type Version struct {
	Model     string          `json:"model"`
	Number    int             `json:"version"`
	Digest    string          `json:"digest"`
	Size      int64           `json:"size"`
	CreatedAt time.Time       `json:"created_at"`
	Actor     string          `json:"actor"`
	Card      json.RawMessage `json:"card,omitempty"`
}

// Event kinds.
const (
	EventPushed     = "pushed"
	EventPromoted   = "promoted"
	EventRolledBack = "rolled_back"
)

// Event is one line of history.
type Event struct {
	Revision uint64    `json:"revision"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Model    string    `json:"model"`
	Kind     string    `json:"kind"`
	From     int       `json:"from,omitempty"`
	To       int       `json:"to,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// Deployment is what a scorer must serve for a model right now.
type Deployment struct {
	Model      string             `json:"model"`
	Revision   uint64             `json:"revision"`
	Signature  artifact.Signature `json:"signature"`
	Production *Deployed          `json:"production,omitempty"`
	Candidate  *Deployed          `json:"candidate,omitempty"`
	// Traffic and Mode describe the candidate's share.
	Traffic float64 `json:"traffic,omitempty"`
	Mode    string  `json:"mode,omitempty"`
	// Blend is the weight of the model against its rules.
	Blend float64 `json:"blend"`
}

// Deployed names one version a scorer must load.
type Deployed struct {
	Version int    `json:"version"`
	Digest  string `json:"digest"`
	Size    int64  `json:"size"`
}

// Verifier loads an artifact in a real runtime and checks it: its signature
// against want (when given) and the card's golden inputs. It returns the signature
// the runtime reports.
type Verifier interface {
	VerifyArtifact(ctx context.Context, path string, model string, want *artifact.Signature, card *artifact.Card) (artifact.Signature, error)
}

var (
	bucketMeta     = []byte("meta")
	bucketModels   = []byte("models")
	bucketVersions = []byte("versions")
	bucketEvents   = []byte("events")
	keyRevision    = []byte("revision")
)

// Registry is the bbolt-backed registry. Construct it with New, set its fields,
// then Open.
type Registry struct {
	// Path is the bbolt file.
	Path string
	// Blobs holds the artifacts.
	Blobs BlobStore
	// Verifier checks artifacts before they are recorded.
	Verifier Verifier
	// StagingDir holds uploads while they are verified; default: beside Path.
	StagingDir string
	// MaxArtifactBytes bounds a pushed artifact (default 1 GiB).
	MaxArtifactBytes int64
	// Logger receives internal errors.
	Logger *slog.Logger
	// Now is the clock (tests may replace it).
	Now func() time.Time

	db *bolt.DB

	// pushMu keeps GC from running between a push's blob upload and its commit.
	pushMu sync.RWMutex

	mu      sync.Mutex
	changed chan struct{}
}

// New returns a registry for the bbolt file at path over blobs.
func New(path string, blobs BlobStore, v Verifier) *Registry {
	return &Registry{Path: path, Blobs: blobs, Verifier: v, MaxArtifactBytes: 1 << 30, Logger: slog.Default(), Now: time.Now}
}

// Open opens (creating if needed) the bbolt file.
func (r *Registry) Open() error {
	if r.StagingDir == "" {
		r.StagingDir = filepath.Join(filepath.Dir(r.Path), "staging")
	}
	if err := os.MkdirAll(r.StagingDir, 0o755); err != nil {
		return fmt.Errorf("registry staging dir: %w", err)
	}
	// Leftovers of uploads interrupted by a crash are never referenced.
	if old, _ := filepath.Glob(filepath.Join(r.StagingDir, "upload-*")); len(old) > 0 {
		for _, p := range old {
			os.Remove(p)
		}
	}
	db, err := bolt.Open(r.Path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("open registry %s: %w", r.Path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketModels, bucketVersions, bucketEvents} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("open registry %s: %w", r.Path, err)
	}
	r.db = db
	r.changed = make(chan struct{})
	return nil
}

// Close closes the bbolt file.
func (r *Registry) Close() error {
	if r.db == nil {
		return nil
	}
	return r.db.Close()
}

// DB exposes the bbolt handle for consistency checks and backups.
func (r *Registry) DB() *bolt.DB { return r.db }

// Revision returns the current registry revision.
func (r *Registry) Revision() (uint64, error) {
	var rev uint64
	err := r.db.View(func(tx *bolt.Tx) error {
		rev = readRevision(tx)
		return nil
	})
	return rev, err
}

func readRevision(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyRevision)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func u64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

// appendEvent bumps the revision, stamps e with it and stores it.
func (r *Registry) appendEvent(tx *bolt.Tx, e *Event) error {
	rev := readRevision(tx) + 1
	if err := tx.Bucket(bucketMeta).Put(keyRevision, u64(rev)); err != nil {
		return err
	}
	e.Revision = rev
	if e.Time.IsZero() {
		e.Time = r.Now().UTC()
	}
	if e.Actor == "" {
		e.Actor = "anonymous"
	}
	buf, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketEvents).Put(u64(rev), buf)
}

// update runs fn in a write transaction and wakes the watchers once it committed.
func (r *Registry) update(fn func(tx *bolt.Tx) error) error {
	if err := r.db.Update(fn); err != nil {
		return err
	}
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return nil
}

// changes returns a channel closed at the next committed change.
func (r *Registry) changes() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func getModel(tx *bolt.Tx, name string) (*Model, error) {
	v := tx.Bucket(bucketModels).Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("model %q: %w", name, ErrNotFound)
	}
	m := &Model{}
	if err := json.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("model %q: corrupt record: %w", name, err)
	}
	return m, nil
}

func putModel(tx *bolt.Tx, m *Model) error {
	buf, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketModels).Put([]byte(m.Name), buf)
}

func getVersion(tx *bolt.Tx, model string, n int) (*Version, error) {
	b := tx.Bucket(bucketVersions).Bucket([]byte(model))
	var v []byte
	if b != nil && n > 0 {
		v = b.Get(u64(uint64(n)))
	}
	if v == nil {
		return nil, fmt.Errorf("model %q version %d: %w", model, n, ErrNotFound)
	}
	ver := &Version{}
	if err := json.Unmarshal(v, ver); err != nil {
		return nil, fmt.Errorf("model %q version %d: corrupt record: %w", model, n, err)
	}
	return ver, nil
}

// Model returns one model.
func (r *Registry) Model(_ context.Context, name string) (*Model, error) {
	if err := CheckModelName(name); err != nil {
		return nil, err
	}
	var m *Model
	err := r.db.View(func(tx *bolt.Tx) (err error) {
		m, err = getModel(tx, name)
		return err
	})
	return m, err
}

// Models returns every model, by name.
func (r *Registry) Models(_ context.Context) ([]Model, error) {
	var out []Model
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketModels).ForEach(func(k, v []byte) error {
			var m Model
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("model %q: corrupt record: %w", k, err)
			}
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// Versions returns a model's versions, oldest first, without their cards.
func (r *Registry) Versions(_ context.Context, model string) ([]Version, error) {
	if err := CheckModelName(model); err != nil {
		return nil, err
	}
	var out []Version
	err := r.db.View(func(tx *bolt.Tx) error {
		if _, err := getModel(tx, model); err != nil {
			return err
		}
		b := tx.Bucket(bucketVersions).Bucket([]byte(model))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var ver Version
			if err := json.Unmarshal(v, &ver); err != nil {
				return fmt.Errorf("model %q version %d: corrupt record: %w", model, binary.BigEndian.Uint64(k), err)
			}
			ver.Card = nil
			out = append(out, ver)
			return nil
		})
	})
	return out, err
}

// Version returns one version with its card.
func (r *Registry) Version(_ context.Context, model string, n int) (*Version, error) {
	if err := CheckModelName(model); err != nil {
		return nil, err
	}
	var v *Version
	err := r.db.View(func(tx *bolt.Tx) (err error) {
		v, err = getVersion(tx, model, n)
		return err
	})
	return v, err
}

// Deployment resolves a model's aliases to the versions a scorer must serve.
func (r *Registry) Deployment(_ context.Context, model string) (*Deployment, error) {
	if err := CheckModelName(model); err != nil {
		return nil, err
	}
	var d *Deployment
	err := r.db.View(func(tx *bolt.Tx) error {
		m, err := getModel(tx, model)
		if err != nil {
			return err
		}
		d = &Deployment{Model: m.Name, Revision: m.Revision, Signature: m.Signature, Blend: m.BlendWeight()}
		deployed := func(n int) (*Deployed, error) {
			v, err := getVersion(tx, model, n)
			if err != nil {
				return nil, err
			}
			return &Deployed{Version: v.Number, Digest: v.Digest, Size: v.Size}, nil
		}
		if m.Production > 0 {
			if d.Production, err = deployed(m.Production); err != nil {
				return err
			}
		}
		if m.Candidate != nil {
			if d.Candidate, err = deployed(m.Candidate.Version); err != nil {
				return err
			}
			d.Traffic, d.Mode = m.Candidate.Traffic, m.Candidate.Mode
		}
		return nil
	})
	return d, err
}

// OpenArtifact streams a version's artifact, verifying its digest as it is read.
func (r *Registry) OpenArtifact(ctx context.Context, model string, n int) (*Version, io.ReadCloser, error) {
	v, err := r.Version(ctx, model, n)
	if err != nil {
		return nil, nil, err
	}
	rc, size, err := r.Blobs.Open(ctx, v.Digest)
	if err != nil {
		return nil, nil, fmt.Errorf("artifact of %s v%d: %w", model, n, err)
	}
	if size != v.Size {
		rc.Close()
		return nil, nil, fmt.Errorf("artifact of %s v%d: %w: blob has %d bytes, version says %d", model, n, ErrDigestMismatch, size, v.Size)
	}
	return v, readCloser{NewVerifyingReader(rc, v.Digest, v.Size), rc}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

var errStop = errors.New("stop")

// Backup writes a consistent copy of the bbolt file while the registry runs.
func (r *Registry) Backup(w io.Writer) (int64, error) {
	var n int64
	err := r.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
