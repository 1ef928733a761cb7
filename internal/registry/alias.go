package registry

import (
	"context"
	"fmt"
	"strings"
)

// AliasRequest moves the production alias.
type AliasRequest struct {
	Model   string
	Version int
	// ExpectRevision, when non-zero, must equal the model's current revision or the
	// change is refused with ErrConflict.
	ExpectRevision uint64
	Actor          string
	Reason         string
	// Force promotes a version the monitor rejected.
	Force bool
}

// changeModel is the one shape of every alias change: in one transaction, read the
// model, refuse a stale expected revision, let change edit the model and name the
// event, then append the event and store the model at the event's revision.
func (r *Registry) changeModel(ctx context.Context, name string, expect uint64, change func(tx MetaTx, m *Model) (*Event, error)) (*Event, error) {
	if err := CheckModelName(name); err != nil {
		return nil, err
	}
	var ev *Event
	err := r.Meta.Update(ctx, func(tx MetaTx) error {
		m, err := tx.Model(name)
		if err != nil {
			return err
		}
		if expect != 0 && expect != m.Revision {
			return fmt.Errorf("model %q is at revision %d, the request expects %d: %w", m.Name, m.Revision, expect, ErrConflict)
		}
		if ev, err = change(tx, m); err != nil {
			return err
		}
		if err := r.appendEvent(tx, ev); err != nil {
			return err
		}
		m.Revision = ev.Revision
		return tx.PutModel(m)
	})
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// Promote points production at req.Version.
func (r *Registry) Promote(ctx context.Context, req AliasRequest) (*Event, error) {
	return r.changeModel(ctx, req.Model, req.ExpectRevision, func(tx MetaTx, m *Model) (*Event, error) {
		if _, err := tx.Version(req.Model, req.Version); err != nil {
			return nil, err
		}
		if m.Production == req.Version {
			return nil, fmt.Errorf("%s v%d is already production: %w", req.Model, req.Version, ErrConflict)
		}
		if why, bad := m.Rejected[req.Version]; bad {
			if !req.Force {
				return nil, fmt.Errorf("%s v%d was rejected by the monitor (%s); promote with force to override: %w", req.Model, req.Version, why, ErrConflict)
			}
			delete(m.Rejected, req.Version)
		}
		m.PromotedAt = r.Now().UTC()
		ev := &Event{Actor: actorOr(req.Actor), Model: req.Model, Kind: EventPromoted, From: m.Production, To: req.Version, Reason: req.Reason}
		if m.Production > 0 {
			m.Previous = append(m.Previous, m.Production)
		}
		m.Production = req.Version
		if m.Candidate != nil && m.Candidate.Version == req.Version {
			// The challenger won: it serves everything now.
			m.Candidate = nil
		}
		return ev, nil
	})
}

// Rollback points production back at the version it held before the current one,
// or at req.Version when that is set.
func (r *Registry) Rollback(ctx context.Context, req AliasRequest) (*Event, error) {
	return r.changeModel(ctx, req.Model, req.ExpectRevision, func(tx MetaTx, m *Model) (*Event, error) {
		if m.Production == 0 {
			return nil, fmt.Errorf("%s has no production version to roll back: %w", req.Model, ErrConflict)
		}
		to := req.Version
		if to == 0 {
			// The previous good version: skip entries equal to the current one
			// (promote v1, v2, v1 leaves v1 in the history twice) and ones the
			// monitor rejected since (as a canary, say), as an automatic
			// rollback does. `--to N --force` still reaches those.
			var skipped []string
			for len(m.Previous) > 0 && to == 0 {
				v := m.Previous[len(m.Previous)-1]
				m.Previous = m.Previous[:len(m.Previous)-1]
				if why, bad := m.Rejected[v]; bad {
					skipped = append(skipped, fmt.Sprintf("v%d was rejected by the monitor (%s)", v, why))
				} else if v != m.Production {
					to = v
				}
			}
			if to == 0 {
				msg := fmt.Sprintf("%s v%d has no earlier good production version to roll back to", req.Model, m.Production)
				if len(skipped) > 0 {
					msg += ": " + strings.Join(skipped, "; ") + "; roll back to one of them by number, with force, to override"
				}
				return nil, fmt.Errorf("%s: %w", msg, ErrConflict)
			}
		} else {
			if _, err := tx.Version(req.Model, to); err != nil {
				return nil, err
			}
			if to == m.Production {
				return nil, fmt.Errorf("%s v%d is already production: %w", req.Model, to, ErrConflict)
			}
			// Drop the target and anything newer from the history.
			for i := len(m.Previous) - 1; i >= 0; i-- {
				if m.Previous[i] == to {
					m.Previous = m.Previous[:i]
					break
				}
			}
		}
		// Rolling back to a version is promoting it: one the monitor rejected
		// (as a canary, say) takes force here too.
		if why, bad := m.Rejected[to]; bad {
			if !req.Force {
				return nil, fmt.Errorf("%s v%d was rejected by the monitor (%s); roll back to it with force to override: %w", req.Model, to, why, ErrConflict)
			}
			delete(m.Rejected, to)
		}
		ev := &Event{Actor: actorOr(req.Actor), Model: req.Model, Kind: EventRolledBack, From: m.Production, To: to, Reason: req.Reason}
		m.Production = to
		m.PromotedAt = r.Now().UTC()
		if m.Candidate != nil && m.Candidate.Version == to {
			m.Candidate = nil
		}
		return ev, nil
	})
}
