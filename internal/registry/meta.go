package registry

import "io"

// MetaStore keeps the registry's metadata: models, versions, tokens, and the
// history of events whose revision numbers every change. Changes are
// transactions, and Changed wakes watchers, so watching from a revision is
// Events after it, then again at each change. The bbolt store (one file, one
// process; the default) implements it; an etcd-backed store can implement it
// too, for a highly available control plane.
type MetaStore interface {
	// View runs fn in a read-only transaction.
	View(fn func(MetaTx) error) error
	// Update runs fn in a read-write transaction, committed if fn returns nil.
	Update(fn func(MetaTx) error) error
	// Changed returns a channel closed at the next committed Update.
	Changed() <-chan struct{}
	// Backup writes a consistent copy of the store while it runs.
	Backup(w io.Writer) (int64, error)
	Close() error
}

// MetaTx is one transaction. Reads of what is absent return ErrNotFound; writes
// are seen by the rest of the transaction, and by others once it commits.
type MetaTx interface {
	// Revision is the revision of the last event.
	Revision() uint64
	Model(name string) (*Model, error)
	// Models returns every model, by name.
	Models() ([]Model, error)
	PutModel(m *Model) error
	Version(model string, n int) (*Version, error)
	// Versions returns a model's versions, oldest first, cards included.
	Versions(model string) ([]Version, error)
	PutVersion(v *Version) error
	// AppendEvent bumps the revision, stamps e with it and stores it.
	AppendEvent(e *Event) error
	// Events returns, in revision order, up to limit events after revision
	// since for which keep is true.
	Events(since uint64, limit int, keep func(*Event) bool) ([]Event, error)
	// LatestEvents returns, in revision order, the last n events after revision
	// since for which keep is true.
	LatestEvents(since uint64, n int, keep func(*Event) bool) ([]Event, error)
	Token(id string) (*Token, error)
	Tokens() ([]Token, error)
	PutToken(t *Token) error
}
