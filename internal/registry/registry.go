// Package registry is the system of record: models, their immutable versions, the
// aliases that say which version serves, and the history of every change, each
// change numbered by a registry-wide revision. Metadata lives in a MetaStore (a
// bbolt file by default, etcd for several control planes); artifacts live in a
// BlobStore addressed by sha256. The stores are drivers in packages of their own
// (boltmeta, etcdmeta, fileblob, s3blob, memblob), each registering a URL scheme.
package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

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
	// Evaluation is the latest comparison of its versions on the same rows.
	Evaluation *Evaluation `json:"evaluation,omitempty"`
	// Rollout is the latest progressive rollout (nil: none yet).
	Rollout *Rollout `json:"rollout,omitempty"`
	// RolloutPolicy judges rollouts (nil: DefaultRolloutPolicy).
	RolloutPolicy *RolloutPolicy `json:"rollout_policy,omitempty"`
}

// Version is one immutable artifact of a model.
type Version struct {
	Model     string    `json:"model"`
	Number    int       `json:"version"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
	Actor     string    `json:"actor"`
	// Reason is why it was pushed, as the pusher said (may be empty).
	Reason string          `json:"reason,omitempty"`
	Card   json.RawMessage `json:"card,omitempty"`
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
	// Unchanged marks an answer to a request that asked for what already
	// holds (promote the production version, clear an absent canary, set the
	// same blend): nothing was stored and no event appended, so such an
	// "event" is never in the history; Revision is the model's current one.
	Unchanged bool `json:"unchanged,omitempty"`
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
// the runtime reports. An error is the artifact's fault (422), unless it wraps
// ErrUnavailable: the verifier itself failed.
type Verifier interface {
	VerifyArtifact(ctx context.Context, path string, model string, want *artifact.Signature, card *artifact.Card) (artifact.Signature, error)
}

// Registry is the registry: metadata in a MetaStore (bbolt by default),
// artifacts in a BlobStore. Construct it with New, set its fields, then Open.
type Registry struct {
	// Path is the bbolt file, used when Meta is not set.
	Path string
	// Meta holds the metadata; Open opens bolt://Path when it is nil (the
	// boltmeta driver must be linked in).
	Meta MetaStore
	// Blobs holds the artifacts.
	Blobs BlobStore
	// Verifier checks artifacts before they are recorded.
	Verifier Verifier
	// StagingDir holds uploads while they are verified; default: beside Path
	// (required when Meta is set and Path is not).
	StagingDir string
	// MaxArtifactBytes bounds a pushed artifact (default 1 GiB).
	MaxArtifactBytes int64
	// Logger receives internal errors.
	Logger *slog.Logger
	// Now is the clock (tests may replace it).
	Now func() time.Time

	// pushMu keeps GC from running between a push's blob upload and its commit.
	pushMu sync.RWMutex
	// tail is the last read of the watch streams, shared among them.
	tail watchTail
}

// New returns a registry for the bbolt file at path over blobs.
func New(path string, blobs BlobStore, v Verifier) *Registry {
	return &Registry{Path: path, Blobs: blobs, Verifier: v, MaxArtifactBytes: 1 << 30, Logger: slog.Default(), Now: time.Now}
}

// Open opens the metadata store (creating the bbolt file if needed).
func (r *Registry) Open() error {
	if r.StagingDir == "" {
		if r.Path == "" {
			return Invalidf("registry: set StagingDir, or Path for a bbolt file")
		}
		r.StagingDir = filepath.Join(filepath.Dir(r.Path), "staging")
	}
	if err := os.MkdirAll(r.StagingDir, 0o755); err != nil {
		return fmt.Errorf("registry staging dir: %w", err)
	}
	// The bbolt file's lock first: the staging files below may be another
	// control plane's uploads in flight until this one holds it.
	if r.Meta == nil {
		abs, err := filepath.Abs(r.Path)
		if err != nil {
			return fmt.Errorf("open registry %s: %w", r.Path, err)
		}
		meta, err := OpenMetaStore(context.Background(), (&url.URL{Scheme: "bolt", Path: abs}).String())
		if err != nil {
			return err
		}
		r.Meta = meta
	}
	// Leftovers of uploads interrupted by a crash are never referenced.
	if old, _ := filepath.Glob(filepath.Join(r.StagingDir, "upload-*")); len(old) > 0 {
		for _, p := range old {
			os.Remove(p)
		}
	}
	return nil
}

// Close closes the metadata store.
func (r *Registry) Close() error {
	if r.Meta == nil {
		return nil
	}
	return r.Meta.Close()
}

// Revision returns the current registry revision.
func (r *Registry) Revision() (uint64, error) {
	var rev uint64
	err := r.Meta.View(context.Background(), func(tx MetaTx) error {
		rev = tx.Revision()
		return nil
	})
	return rev, err
}

// appendEvent stamps e with the time and a default actor, and appends it.
func (r *Registry) appendEvent(tx MetaTx, e *Event) error {
	if e.Time.IsZero() {
		e.Time = r.Now().UTC()
	}
	if e.Actor == "" {
		e.Actor = "anonymous"
	}
	return tx.AppendEvent(e)
}

// Model returns one model.
func (r *Registry) Model(ctx context.Context, name string) (*Model, error) {
	if err := CheckModelName(name); err != nil {
		return nil, err
	}
	var m *Model
	err := r.Meta.View(ctx, func(tx MetaTx) (err error) {
		m, err = tx.Model(name)
		return err
	})
	return m, err
}

// Models returns every model, by name.
func (r *Registry) Models(ctx context.Context) ([]Model, error) {
	var out []Model
	err := r.Meta.View(ctx, func(tx MetaTx) (err error) {
		out, err = tx.Models()
		return err
	})
	return out, err
}

// Versions returns a model's versions, oldest first, without their cards.
func (r *Registry) Versions(ctx context.Context, model string) ([]Version, error) {
	if err := CheckModelName(model); err != nil {
		return nil, err
	}
	var out []Version
	err := r.Meta.View(ctx, func(tx MetaTx) error {
		if _, err := tx.Model(model); err != nil {
			return err
		}
		var err error
		out, err = tx.Versions(model)
		return err
	})
	for i := range out {
		out[i].Card = nil
	}
	return out, err
}

// Version returns one version with its card.
func (r *Registry) Version(ctx context.Context, model string, n int) (*Version, error) {
	if err := CheckModelName(model); err != nil {
		return nil, err
	}
	var v *Version
	err := r.Meta.View(ctx, func(tx MetaTx) (err error) {
		v, err = tx.Version(model, n)
		return err
	})
	return v, err
}

// Deployment resolves a model's aliases to the versions a scorer must serve.
func (r *Registry) Deployment(ctx context.Context, model string) (*Deployment, error) {
	if err := CheckModelName(model); err != nil {
		return nil, err
	}
	var d *Deployment
	err := r.Meta.View(ctx, func(tx MetaTx) error {
		m, err := tx.Model(model)
		if err != nil {
			return err
		}
		d = &Deployment{Model: m.Name, Revision: m.Revision, Signature: m.Signature, Blend: m.BlendWeight()}
		deployed := func(n int) (*Deployed, error) {
			v, err := tx.Version(model, n)
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

// Backup writes a consistent copy of the metadata (the bbolt file) while the
// registry runs.
func (r *Registry) Backup(w io.Writer) (int64, error) { return r.Meta.Backup(context.Background(), w) }
