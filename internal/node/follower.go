// Package node runs the control-plane side of a scorer node: it follows a model's
// deployment on the watch stream, fetches and verifies artifacts through the local
// cache, and swaps verified sessions into the slot the scorer API serves from.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/registry"
)

// Follower keeps a slot serving a model's production version.
type Follower struct {
	Client *client.Client
	Model  string
	// Slot serves production; CandidateSlot the canary (when set).
	Slot          *loader.Slot
	CandidateSlot *loader.Slot
	// OnRouting, when set, receives the canary share and mode and the blend weight
	// of every deployment seen.
	OnRouting func(traffic float64, mode string, blend float64)
	Cache     *loader.Cache
	Options   loader.Options
	Logger    *slog.Logger
	// MaxBackoff caps the wait between reconnects.
	MaxBackoff time.Duration
	// KeepVersions bounds the cached artifacts of the model (default 3).
	KeepVersions int
	// OnLoad, when set, hears of every version swapped in, with its card.
	OnLoad func(version int, card *artifact.Card)
	// LoadTimeout bounds the load of one version: fetch, digest check,
	// signature, golden inputs and warm-up (default DefaultLoadTimeout).
	LoadTimeout time.Duration

	mu      sync.Mutex
	lastErr error
	loads   int
	failed  int
	// pending are the loads in progress, by slot: the digest each loads and
	// how to stop it when a newer deployment supersedes it.
	pending map[*loader.Slot]pendingLoad
}

// DefaultLoadTimeout bounds a load unless a node says otherwise.
const DefaultLoadTimeout = 30 * time.Second

type pendingLoad struct {
	digest string
	cancel context.CancelFunc
}

// errSuperseded stops a load a newer deployment made pointless.
var errSuperseded = errors.New("superseded by a newer deployment")

// supersede stops the loads in progress that the deployment no longer asks
// for, so a promotion or rollback never waits behind a load it replaced.
func (f *Follower) supersede(ctx context.Context) {
	f.mu.Lock()
	n := len(f.pending)
	f.mu.Unlock()
	if n == 0 {
		return
	}
	d, err := f.Client.Deployment(ctx, f.Model)
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for slot, p := range f.pending {
		want := d.Production
		if slot != f.Slot {
			want = d.Candidate
		}
		if want == nil || want.Digest != p.digest {
			f.Logger.Info("a newer deployment supersedes the load in progress", "model", f.Model, "digest", p.digest[:min(12, len(p.digest))])
			p.cancel()
		}
	}
}

// Status is what a follower has done so far.
type Status struct {
	Loads       int `json:"loads"`
	FailedLoads int `json:"failed_loads"`
	// LastError is why the node does not serve what the deployment asks for,
	// while it does not.
	LastError string `json:"last_error,omitempty"`
}

// Status returns counters and the last load error.
func (f *Follower) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Status{Loads: f.loads, FailedLoads: f.failed}
	if f.lastErr != nil {
		s.LastError = f.lastErr.Error()
	}
	return s
}

// Run follows the watch stream until ctx is done, reconnecting with backoff and
// resyncing on every (re)connect, so a control plane that comes back is caught up.
func (f *Follower) Run(ctx context.Context) error {
	if f.MaxBackoff == 0 {
		f.MaxBackoff = 5 * time.Second
	}
	var since uint64
	// While the control plane is out of reach the first failure is a warning and
	// so is a different one; repeats are debug lines, and the way back is told.
	var downSince time.Time
	var lastWarned string
	// Loads run on a goroutine of their own, so that the watch stream is
	// read while one is in progress and a newer deployment can supersede it.
	kicks := make(chan struct{}, 1)
	kick := func() {
		select {
		case kicks <- struct{}{}:
		default:
		}
	}
	syncDone := make(chan struct{})
	defer func() { <-syncDone }()
	go func() {
		defer close(syncDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-kicks:
			}
			if _, err := f.Sync(ctx); err != nil && ctx.Err() == nil {
				f.Logger.Warn("sync failed", "model", f.Model, "err", err)
			}
		}
	}()
	for attempt := 0; ; {
		rev, err := f.revision(ctx)
		if err == nil {
			kick()
		}
		if err == nil {
			if !downSince.IsZero() {
				f.Logger.Info("in touch with the control plane again; caught up", "model", f.Model, "revision", rev, "out_of_touch", time.Since(downSince).Round(time.Millisecond))
				downSince, lastWarned = time.Time{}, ""
			}
			// Watch from what the sync saw, not from the last event heard: a
			// registry restored from a backup since numbers its new events
			// again from below that, and they must not be skipped. (At worst
			// some events are heard twice, and a sync is idempotent.)
			since = rev
			var werr error
			since, werr = f.Client.Watch(ctx, f.Model, since, func(registry.Event) {
				f.supersede(ctx)
				kick()
			})
			if ctx.Err() != nil {
				return nil
			}
			// A stream the control plane refused (429: this token holds
			// too many) is retried with a growing wait, not ten times a
			// second; one that ran and broke is reconnected at once.
			if client.StatusOf(werr) == 0 {
				attempt = 0
			}
			f.Logger.Warn("watch stream ended; reconnecting", "model", f.Model, "err", werr)
		} else if ctx.Err() == nil {
			if downSince.IsZero() {
				downSince = time.Now()
			}
			msg := "cannot reach the control plane; serving what is loaded"
			if s := client.StatusOf(err); s == http.StatusUnauthorized || s == http.StatusForbidden {
				msg = "the control plane refuses this scorer's token (MODELOPS_SCORER_TOKEN); serving what is loaded"
			}
			level := slog.LevelWarn
			if err.Error() == lastWarned {
				level = slog.LevelDebug
			}
			lastWarned = err.Error()
			f.Logger.Log(ctx, level, msg, "model", f.Model, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(client.Backoff(attempt, f.MaxBackoff)):
			attempt++
		}
	}
}

// revision is the revision of the model's deployment (0 before its first
// push).
func (f *Follower) revision(ctx context.Context) (uint64, error) {
	d, err := f.Client.Deployment(ctx, f.Model)
	if client.StatusOf(err) == http.StatusNotFound {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return d.Revision, nil
}

// Sync loads the model's production (and canary) version if it is not the one
// being served. It returns the deployment's revision. A load that fails leaves the
// slot as it was.
func (f *Follower) Sync(ctx context.Context) (uint64, error) {
	d, err := f.Client.Deployment(ctx, f.Model)
	if client.StatusOf(err) == http.StatusNotFound {
		return 0, nil // not pushed yet; the watch stream says when it is
	}
	if err != nil {
		return 0, err
	}
	if d.Production != nil {
		f.ensure(ctx, f.Slot, d.Production, d.Signature, true)
	}
	if f.CandidateSlot != nil {
		if d.Candidate == nil {
			f.CandidateSlot.Close()
		} else {
			f.ensure(ctx, f.CandidateSlot, d.Candidate, d.Signature, false)
		}
	}
	if f.OnRouting != nil {
		f.OnRouting(d.Traffic, d.Mode, d.Blend)
	}
	// A load error stands for what the node was asked to serve and cannot; once
	// it serves the deployment (a later version, or a rollback to the one it
	// kept) the error is over.
	if serves(f.Slot, d.Production) && (f.CandidateSlot == nil || d.Candidate == nil || serves(f.CandidateSlot, d.Candidate)) {
		f.mu.Lock()
		f.lastErr = nil
		f.mu.Unlock()
	}
	return d.Revision, nil
}

// serves tells whether slot holds want (nothing wanted counts as served).
func serves(slot *loader.Slot, want *registry.Deployed) bool {
	if want == nil {
		return true
	}
	_, digest, ok := slot.Current()
	return ok && digest == want.Digest
}

// ensure loads want into slot unless it already serves it, and records a failure.
func (f *Follower) ensure(ctx context.Context, slot *loader.Slot, want *registry.Deployed, sig artifact.Signature, production bool) {
	if _, digest, ok := slot.Current(); ok && digest == want.Digest {
		return
	}
	if err := f.load(ctx, slot, want, sig, production); err != nil {
		if ctx.Err() != nil || errors.Is(err, errSuperseded) {
			return // shutting down, or a newer deployment is on its way
		}
		f.mu.Lock()
		f.failed++
		f.lastErr = err
		f.mu.Unlock()
		f.Logger.Error("load failed; keeping the version being served", "model", f.Model, "version", want.Version, "production", production, "err", err)
	}
}

func (f *Follower) load(parent context.Context, slot *loader.Slot, p *registry.Deployed, sig artifact.Signature, production bool) error {
	start := time.Now()
	timeout := f.LoadTimeout
	if timeout <= 0 {
		timeout = DefaultLoadTimeout
	}
	ctx, cancelTimeout := context.WithTimeoutCause(parent, timeout, fmt.Errorf("%w: v%d did not load within %s", loader.ErrLoadTimeout, p.Version, timeout))
	defer cancelTimeout()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	f.mu.Lock()
	if f.pending == nil {
		f.pending = map[*loader.Slot]pendingLoad{}
	}
	f.pending[slot] = pendingLoad{digest: p.Digest, cancel: func() { cancel(errSuperseded) }}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.pending, slot)
		f.mu.Unlock()
	}()
	err := f.loadWithin(ctx, slot, p, sig, production, start)
	if err != nil && ctx.Err() != nil && parent.Err() == nil {
		// Say why it stopped: a deadline, or a newer deployment.
		return fmt.Errorf("%w (%v)", context.Cause(ctx), err)
	}
	return err
}

func (f *Follower) loadWithin(ctx context.Context, slot *loader.Slot, p *registry.Deployed, sig artifact.Signature, production bool, start time.Time) error {
	path, ok := f.Cache.Lookup(p.Digest)
	if !ok {
		rc, _, err := f.Client.Artifact(ctx, f.Model, p.Version)
		if err != nil {
			return fmt.Errorf("fetch v%d: %w", p.Version, err)
		}
		path, err = f.Cache.Store(p.Digest, p.Size, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("fetch v%d: %w", p.Version, err)
		}
	}
	v, err := f.Client.Version(ctx, f.Model, p.Version)
	if err != nil {
		return fmt.Errorf("card of v%d: %w", p.Version, err)
	}
	if v.Digest != p.Digest {
		return fmt.Errorf("v%d: %w: version says %s, deployment says %s", p.Version, loader.ErrDigest, v.Digest, p.Digest)
	}
	card, err := artifact.ParseCard(v.Card)
	if err != nil {
		return fmt.Errorf("card of v%d: %w", p.Version, err)
	}
	if err := f.swapIn(ctx, slot, path, p.Version, p.Digest, sig, card); err != nil {
		return err
	}
	role := "canary"
	if production {
		role = "production"
		keep := f.KeepVersions
		if keep <= 0 {
			keep = 3
		}
		if err := f.Cache.SaveDeployment(loader.CachedDeployment{
			Model: f.Model, Version: p.Version, Digest: p.Digest, Signature: sig, Card: v.Card,
		}, keep); err != nil {
			f.Logger.Warn("cannot record the deployment in the cache", "err", err)
		}
	}
	f.Logger.Info("serving new version", "model", f.Model, "role", role, "version", p.Version, "digest", p.Digest[:12], "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// swapIn builds a session from a verified artifact, checks it against the
// signature and card, warms it up and publishes it.
func (f *Follower) swapIn(ctx context.Context, slot *loader.Slot, path string, version int, digest string, sig artifact.Signature, card *artifact.Card) error {
	s, err := loader.PrepareContext(ctx, path, f.Model, &sig, card, f.Options)
	if err != nil {
		return fmt.Errorf("v%d: %w", version, err)
	}
	if f.OnLoad != nil {
		f.OnLoad(version, card)
	}
	slot.Swap(loader.NewLoaded(s, version, digest, card))
	f.mu.Lock()
	f.loads++
	f.lastErr = nil
	f.mu.Unlock()
	return nil
}

// Restore serves the deployment the cache recorded last, if its artifact is still
// there and verifies; it needs no control plane.
func (f *Follower) Restore() error {
	d, err := f.Cache.LoadDeployment(f.Model)
	if err != nil {
		return err
	}
	path, ok := f.Cache.Lookup(d.Digest)
	if !ok {
		return fmt.Errorf("cached deployment v%d: artifact %s is missing or fails its digest", d.Version, d.Digest[:12])
	}
	card, err := artifact.ParseCard(d.Card)
	if err != nil {
		return fmt.Errorf("cached deployment v%d: %w", d.Version, err)
	}
	timeout := f.LoadTimeout
	if timeout <= 0 {
		timeout = DefaultLoadTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := f.swapIn(ctx, f.Slot, path, d.Version, d.Digest, d.Signature, card); err != nil {
		return fmt.Errorf("cached deployment: %w", err)
	}
	f.Logger.Info("serving the cached deployment until the control plane answers", "model", f.Model, "version", d.Version, "digest", d.Digest[:12])
	return nil
}
