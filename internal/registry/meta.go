package registry

import (
	"context"
	"io"
	"net/url"
	"strings"
	"sync"
)

// MetaStore keeps the registry's metadata: models, versions, tokens, and the
// history of events whose revision numbers every change. Changes are
// transactions, and Changed wakes watchers, so watching from a revision is
// Events after it, then again at each change. Drivers live in packages of their
// own and register a URL scheme: boltmeta (bolt://, one file, one process; the
// default) and etcdmeta (etcd://, shared by several control planes).
type MetaStore interface {
	// View runs fn in a read-only transaction that sees one consistent state.
	View(ctx context.Context, fn func(MetaTx) error) error
	// Update runs fn in a read-write transaction, committed if fn returns nil.
	// A store may run fn more than once (an optimistic store retries it when
	// what it read changed before the commit), so fn changes nothing but the
	// transaction and what it returns through its closure.
	Update(ctx context.Context, fn func(MetaTx) error) error
	// Changed returns a channel closed at the next committed Update (by this
	// process or, for a shared store, by any other).
	Changed() <-chan struct{}
	// Backup writes a consistent copy of the store while it runs.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	Close() error
}

// MetaTx is one transaction. Reads of what is absent return ErrNotFound; writes
// are seen by the rest of the transaction, and by others once it commits. The
// transaction carries the context of the View or Update that made it.
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

// MetaDriver opens a metadata store from a parsed URL.
type MetaDriver func(ctx context.Context, u *url.URL) (MetaStore, error)

var (
	metaDriversMu sync.Mutex
	metaDrivers   = map[string]MetaDriver{}
)

// RegisterMetaDriver makes a URL scheme available to OpenMetaStore. A driver
// package calls it from init.
func RegisterMetaDriver(scheme string, d MetaDriver) {
	metaDriversMu.Lock()
	defer metaDriversMu.Unlock()
	if _, dup := metaDrivers[scheme]; dup {
		panic("registry: metadata driver registered twice: " + scheme)
	}
	metaDrivers[scheme] = d
}

// OpenMetaStore opens a metadata store by URL: bolt:///DIR/registry.db or
// etcd://HOST:PORT[,HOST:PORT…]/PREFIX?….
func OpenMetaStore(ctx context.Context, rawURL string) (MetaStore, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, Invalidf("metadata store URL %q: %v", redactURL(rawURL), err)
	}
	metaDriversMu.Lock()
	d, ok := metaDrivers[u.Scheme]
	metaDriversMu.Unlock()
	if !ok {
		return nil, Invalidf("metadata store URL %q: unknown scheme %q (want bolt:///DIR/registry.db or etcd://HOST:PORT[,HOST:PORT…]/PREFIX)", u.Redacted(), u.Scheme)
	}
	return d(ctx, u)
}

// redactURL drops what could be a password from a URL that did not parse.
func redactURL(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "…@" + s[i+1:]
		}
	}
	return s
}
