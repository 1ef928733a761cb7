package registry

import (
	"context"
	"sync"
)

// EventQuery selects history.
type EventQuery struct {
	// Model, when set, keeps only that model's events.
	Model string
	// Since keeps events with a revision greater than it.
	Since uint64
	// Limit caps the number of events (0: 1000), the first ones after Since.
	Limit int
	// Last, when set, asks for the last this many events instead (after Since
	// still, and in revision order too); Limit is then ignored.
	Last int
}

// Events returns events in revision order.
func (r *Registry) Events(ctx context.Context, q EventQuery) ([]Event, error) {
	if q.Model != "" {
		if err := CheckModelName(q.Model); err != nil {
			return nil, err
		}
	}
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	keep := func(e *Event) bool { return q.Model == "" || e.Model == q.Model }
	var out []Event
	err := r.Meta.View(ctx, func(tx MetaTx) (err error) {
		if q.Last > 0 {
			out, err = tx.LatestEvents(q.Since, q.Last, keep)
		} else {
			out, err = tx.Events(q.Since, q.Limit, keep)
		}
		return err
	})
	return out, err
}

// Watch sends every event after revision since, then each new one as it commits,
// until ctx is done. The channel is closed when Watch stops.
func (r *Registry) Watch(ctx context.Context, since uint64) <-chan Event {
	ch := make(chan Event, 16)
	go func() {
		defer close(ch)
		for {
			// Take the wake-up channel before reading, so a commit between the read
			// and the wait is not missed.
			wake := r.Meta.Changed()
			evs, err := r.tail.read(ctx, r, wake, since, 256)
			if err != nil {
				r.Logger.Error("watch: read events", "err", err)
				return
			}
			for _, e := range evs {
				select {
				case ch <- e:
					since = e.Revision
				case <-ctx.Done():
					return
				}
			}
			if len(evs) == 256 {
				continue
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// watchTail lets the watch streams woken by one commit share one read of the
// store instead of each reading it: with a thousand streams, a commit cost a
// thousand reads (of etcd, with several control planes) before every stream
// had sent its event.
type watchTail struct {
	mu sync.Mutex
	// wake is the change channel taken before the read of events: while it
	// is the current one, nothing committed since the read.
	wake <-chan struct{}
	// from is the revision the read started after; events are every event
	// after it (the read was not cut at its limit).
	from   uint64
	events []Event
}

// read returns the events after since, at most limit: from the last read
// when that read was made under the same change channel wake (taken before
// it, so it saw every commit wake stands for) and covers since; from the
// store otherwise, kept for the next stream.
func (t *watchTail) read(ctx context.Context, r *Registry, wake <-chan struct{}, since uint64, limit int) ([]Event, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.wake == wake && t.from <= since {
		var out []Event
		for _, e := range t.events {
			if e.Revision > since {
				out = append(out, e)
			}
		}
		if len(out) <= limit {
			return out, nil
		}
	}
	evs, err := r.Events(ctx, EventQuery{Since: since, Limit: limit})
	if err != nil {
		return nil, err
	}
	if len(evs) < limit {
		t.wake, t.from, t.events = wake, since, evs
	}
	return evs, nil
}
