package monitor

import (
	"context"
	"errors"
	"time"

	"github.com/modelops/modelops/internal/registry"
)

// RolloutStatus is a model's rollout as stored, with the monitor's latest
// analysis of its current step.
type RolloutStatus struct {
	Model   string                 `json:"model"`
	Rollout *registry.Rollout      `json:"rollout"`
	Policy  registry.RolloutPolicy `json:"policy"`
	// Analysis is the latest analysis of the current step (on the monitor's
	// leader; nil elsewhere or before the first).
	Analysis *Analysis `json:"analysis,omitempty"`
}

// Rollout returns a model's rollout status.
func (m *Monitor) Rollout(ctx context.Context, model string) (*RolloutStatus, error) {
	md, err := m.Registry.Model(ctx, model)
	if err != nil {
		return nil, err
	}
	st := &RolloutStatus{Model: model, Rollout: md.Rollout, Policy: md.EffectiveRolloutPolicy()}
	m.mu.Lock()
	if a, ok := m.analyses[model]; ok && md.Rollout != nil && a.Version == md.Rollout.Version {
		st.Analysis = &a
	}
	m.mu.Unlock()
	return st, nil
}

// stepRollout judges a running rollout's current step and moves it on: pass
// after the step's interval, fail at once, or time out. It runs on the
// monitor's leader only (Run), each evaluation.
func (m *Monitor) stepRollout(ctx context.Context, md registry.Model) {
	ro := md.Rollout
	if ro == nil || ro.State != registry.RolloutRunning {
		return
	}
	if md.Candidate == nil || md.Candidate.Version != ro.Version {
		// Cleared or replaced by hand, or by the rollback policy.
		reason := "the canary was changed outside the rollout"
		if why, bad := md.Rejected[ro.Version]; bad {
			reason = "the canary was rejected: " + why
		}
		m.rolloutDone(ctx, md.Name, "abort", func() (*registry.Event, error) {
			return m.Registry.AbortRollout(ctx, md.Name, "monitor", reason)
		})
		return
	}
	now := m.Now()
	shadow := ro.Step < 0
	arm := "challenger"
	if shadow {
		arm = "shadow"
	}
	ck := seriesKey{md.Name, ro.Version, arm}
	pk := seriesKey{md.Name, md.Production, "champion"}
	from := ro.StepSince
	since := ro.StartedAt
	if oldest := now.Add(-m.Retain); since.Before(oldest) {
		since = oldest
	}
	if from.Before(since) {
		from = since
	}
	a := Analyze(m.window(ck, from, now), m.window(pk, from, now), m.window(ck, since, now), m.window(pk, since, now),
		shadow, md.EffectivePolicy(), md.EffectiveRolloutPolicy())
	m.mu.Lock()
	if m.analyses == nil {
		m.analyses = map[string]Analysis{}
	}
	m.analyses[md.Name] = a
	m.mu.Unlock()
	elapsed := now.Sub(ro.StepSince)
	need := time.Duration(ro.Interval)
	if shadow {
		need = time.Duration(ro.Shadow)
	}
	switch {
	case a.Verdict == Fail:
		m.rolloutDone(ctx, md.Name, registry.EventRolloutFailed, func() (*registry.Event, error) {
			return m.Registry.FailRollout(ctx, md.Name, ro.Version, false, a.String())
		})
	case a.Verdict == Pass && elapsed >= need:
		m.rolloutDone(ctx, md.Name, registry.EventRolloutStep, func() (*registry.Event, error) {
			return m.Registry.AdvanceRollout(ctx, md.Name, ro.Version, ro.Step, a.String())
		})
	case a.Verdict == Inconclusive && elapsed >= time.Duration(ro.Timeout):
		m.rolloutDone(ctx, md.Name, registry.EventRolloutTimedOut, func() (*registry.Event, error) {
			return m.Registry.FailRollout(ctx, md.Name, ro.Version, true, a.String())
		})
	}
}

// rolloutDone carries out a rollout decision; a conflict (a person paused or
// aborted meanwhile) is left for the next evaluation.
func (m *Monitor) rolloutDone(ctx context.Context, model, kind string, do func() (*registry.Event, error)) {
	ev, err := do()
	if err != nil {
		if !errors.Is(err, registry.ErrConflict) {
			m.Logger.Error("monitor: rollout", "model", model, "err", err)
		}
		return
	}
	m.count(model, ev.Kind)
	m.Logger.Info("monitor: rollout", "model", model, "event", ev.Kind, "reason", ev.Reason)
}
