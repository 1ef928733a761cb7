package registry

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// EventQuery selects history.
type EventQuery struct {
	// Model, when set, keeps only that model's events.
	Model string
	// Since keeps events with a revision greater than it.
	Since uint64
	// Limit caps the number of events (0: 1000).
	Limit int
}

// Events returns events in revision order.
func (r *Registry) Events(_ context.Context, q EventQuery) ([]Event, error) {
	if q.Model != "" {
		if err := CheckModelName(q.Model); err != nil {
			return nil, err
		}
	}
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	var out []Event
	err := r.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(u64(q.Since + 1)); k != nil && len(out) < q.Limit; k, v = c.Next() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("event %x: corrupt record: %w", k, err)
			}
			if q.Model == "" || e.Model == q.Model {
				out = append(out, e)
			}
		}
		return nil
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
			wake := r.changes()
			evs, err := r.Events(ctx, EventQuery{Since: since, Limit: 256})
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
