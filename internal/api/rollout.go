package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/wire"
)

func durationOf(d *registry.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return time.Duration(*d)
}

func (cp *ControlPlane) startRollout(c echo.Context) error {
	var b wire.RolloutBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	if b.Version < 1 {
		return badRequest("rollout needs \"version\": a positive whole number")
	}
	for _, d := range []*registry.Duration{b.Interval, b.Timeout, b.Shadow} {
		if d != nil && *d <= 0 {
			return badRequest("rollout durations must be positive")
		}
	}
	if b.Steps != nil {
		if err := registry.CheckSteps(b.Steps); err != nil {
			return err
		}
	}
	ev, err := cp.Registry.StartRollout(c.Request().Context(), registry.RolloutRequest{
		Model: c.Param("model"), Version: b.Version, Steps: b.Steps, Interval: durationOf(b.Interval), Timeout: durationOf(b.Timeout),
		Mode: b.Mode, Shadow: durationOf(b.Shadow), Actor: actorOf(c),
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ev)
}

func (cp *ControlPlane) getRollout(c echo.Context) error {
	ctx := c.Request().Context()
	if cp.Monitor != nil {
		st, err := cp.Monitor.Rollout(ctx, c.Param("model"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, st)
	}
	m, err := cp.Registry.Model(ctx, c.Param("model"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, monitor.RolloutStatus{Model: m.Name, Rollout: m.Rollout, Policy: m.EffectiveRolloutPolicy()})
}

func (cp *ControlPlane) rolloutAction(c echo.Context, do func(model, actor, reason string) (*registry.Event, error)) error {
	var b wire.RolloutActionBody
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &b); err != nil {
			return err
		}
	}
	if err := checkText("reason", b.Reason); err != nil {
		return err
	}
	ev, err := do(c.Param("model"), actorOf(c), b.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ev)
}

func (cp *ControlPlane) pauseRollout(c echo.Context) error {
	return cp.rolloutAction(c, func(model, actor, _ string) (*registry.Event, error) {
		return cp.Registry.PauseRollout(c.Request().Context(), model, actor)
	})
}

func (cp *ControlPlane) resumeRollout(c echo.Context) error {
	return cp.rolloutAction(c, func(model, actor, _ string) (*registry.Event, error) {
		return cp.Registry.ResumeRollout(c.Request().Context(), model, actor)
	})
}

func (cp *ControlPlane) abortRollout(c echo.Context) error {
	return cp.rolloutAction(c, func(model, actor, reason string) (*registry.Event, error) {
		return cp.Registry.AbortRollout(c.Request().Context(), model, actor, reason)
	})
}

func (cp *ControlPlane) getRolloutPolicy(c echo.Context) error {
	m, err := cp.Registry.Model(c.Request().Context(), c.Param("model"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m.EffectiveRolloutPolicy())
}

func (cp *ControlPlane) putRolloutPolicy(c echo.Context) error {
	var b wire.RolloutPolicyBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	ctx := c.Request().Context()
	m, err := cp.Registry.Model(ctx, c.Param("model"))
	if err != nil {
		return err
	}
	p := m.EffectiveRolloutPolicy()
	if b.Steps != nil {
		p.Steps = b.Steps
	}
	setDur := func(dst *registry.Duration, v *registry.Duration) {
		if v != nil {
			*dst = *v
		}
	}
	setDur(&p.Interval, b.Interval)
	setDur(&p.Timeout, b.Timeout)
	setInt := func(dst *int64, v *int64) {
		if v != nil {
			*dst = *v
		}
	}
	setInt(&p.MinRequests, b.MinRequests)
	setInt(&p.MinScores, b.MinScores)
	setInt(&p.MinOutcomes, b.MinOutcomes)
	if b.RequireOutcomes != nil {
		p.RequireOutcomes = *b.RequireOutcomes
	}
	setF := func(dst *float64, v *float64) {
		if v != nil {
			*dst = *v
		}
	}
	setF(&p.LossMargin, b.LossMargin)
	setF(&p.Alpha, b.Alpha)
	setF(&p.MaxShadowDiff, b.MaxShadowDiff)
	ev, err := cp.Registry.SetRolloutPolicy(ctx, m.Name, p, b.ExpectRevision, actorOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"policy": p, "event": ev})
}
