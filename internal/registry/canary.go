package registry

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Canary modes.
const (
	ModeAB     = "ab"
	ModeShadow = "shadow"
)

// More event kinds.
const (
	EventCanarySet     = "canary_set"
	EventCanaryCleared = "canary_cleared"
	EventBlendSet      = "blend_set"
)

// Canary is the candidate alias: a challenger version with a share of traffic.
type Canary struct {
	Version int `json:"version"`
	// Traffic is the percentage of requests (ab) or the share scored in the
	// background (shadow), 0–100.
	Traffic float64 `json:"traffic"`
	Mode    string  `json:"mode"`
	// Since is when this version became the canary (a new share or mode for the
	// same version keeps it): the monitor judges it on its traffic from then.
	Since time.Time `json:"since,omitempty"`
}

// CanaryRequest sets or clears the candidate alias.
type CanaryRequest struct {
	Model          string
	Version        int
	Traffic        float64
	Mode           string
	Clear          bool
	ExpectRevision uint64
	Actor, Reason  string
}

// SetCanary points the candidate alias at a version with a traffic share and mode,
// or clears it.
func (r *Registry) SetCanary(ctx context.Context, req CanaryRequest) (*Event, error) {
	if !req.Clear {
		if req.Mode == "" {
			req.Mode = ModeAB
		}
		if req.Mode != ModeAB && req.Mode != ModeShadow {
			return nil, Invalidf("canary mode %q: want ab or shadow", req.Mode)
		}
		if math.IsNaN(req.Traffic) || req.Traffic <= 0 || req.Traffic > 100 {
			return nil, Invalidf("canary traffic %v: want a percentage above 0 and at most 100", req.Traffic)
		}
	}
	return r.changeModel(ctx, req.Model, req.ExpectRevision, func(tx MetaTx, m *Model) (*Event, error) {
		if req.Clear {
			if m.Candidate == nil {
				return nil, fmt.Errorf("%s has no canary to clear: %w", req.Model, ErrConflict)
			}
			ev := &Event{Actor: actorOr(req.Actor), Model: req.Model, Kind: EventCanaryCleared, From: m.Candidate.Version, Reason: req.Reason}
			m.Candidate = nil
			return ev, nil
		}
		if _, err := tx.Version(req.Model, req.Version); err != nil {
			return nil, err
		}
		if why, bad := m.Rejected[req.Version]; bad {
			return nil, fmt.Errorf("%s v%d was rejected by the monitor (%s): %w", req.Model, req.Version, why, ErrConflict)
		}
		if req.Version == m.Production {
			return nil, fmt.Errorf("%s v%d is production; a canary must be another version: %w", req.Model, req.Version, ErrConflict)
		}
		from := 0
		if m.Candidate != nil {
			from = m.Candidate.Version
		}
		reason := withWhy(fmt.Sprintf("%s, %g%% of traffic", req.Mode, req.Traffic), req.Reason)
		since := r.Now().UTC()
		if m.Candidate != nil && m.Candidate.Version == req.Version {
			since = m.Candidate.Since // a ramp of the same version
		}
		m.Candidate = &Canary{Version: req.Version, Traffic: req.Traffic, Mode: req.Mode, Since: since}
		return &Event{Actor: actorOr(req.Actor), Model: req.Model, Kind: EventCanarySet, From: from, To: req.Version, Reason: reason}, nil
	})
}

// BlendRequest sets a model's blend weight w: score = w·model + (1−w)·rules.
type BlendRequest struct {
	Model          string
	Weight         float64
	ExpectRevision uint64
	Actor, Reason  string
}

// SetBlend records the weight the model's score gets against its fallback rules.
func (r *Registry) SetBlend(ctx context.Context, req BlendRequest) (*Event, error) {
	if math.IsNaN(req.Weight) || req.Weight < 0 || req.Weight > 1 {
		return nil, Invalidf("blend weight %v: want a number from 0 to 1", req.Weight)
	}
	return r.changeModel(ctx, req.Model, req.ExpectRevision, func(_ MetaTx, m *Model) (*Event, error) {
		reason := withWhy(fmt.Sprintf("weight %g (was %g)", req.Weight, m.BlendWeight()), req.Reason)
		w := req.Weight
		m.Blend = &w
		return &Event{Actor: actorOr(req.Actor), Model: req.Model, Kind: EventBlendSet, Reason: reason}, nil
	})
}

// withWhy is an event's reason: what changed, which the history would otherwise
// not hold (a canary's share and mode, a blend's weight), then the caller's why.
func withWhy(what, why string) string {
	if why == "" {
		return what
	}
	return what + ": " + why
}

// BlendWeight is the model's weight against its rules (1 unless set).
func (m *Model) BlendWeight() float64 {
	if m.Blend == nil {
		return 1
	}
	return *m.Blend
}
