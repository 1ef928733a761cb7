// Package etcdmeta is the registry's metadata in an etcd cluster
// (etcd://HOST:PORT[,HOST:PORT…]/PREFIX), shared by any number of control
// planes. A change is one etcd transaction: it reads at one etcd revision,
// writes only if nothing it read has changed since (compared by mod revision),
// and runs again otherwise. Every change that appends an event also writes the
// registry revision, so registry revisions stay one per event, in order, without
// gaps, whichever replica made them. Watchers are woken by an etcd watch.
//
// Keys, under PREFIX/: revision, models/<name>, versions/<model>/<n, 10
// digits>, events/<revision, 20 digits>, tokens/<id>; values are JSON.
package etcdmeta

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelops/modelops/internal/registry"
)

func init() {
	registry.RegisterMetaDriver("etcd", func(ctx context.Context, u *url.URL) (registry.MetaStore, error) {
		cfg, err := ParseURL(u)
		if err != nil {
			return nil, err
		}
		return Open(ctx, cfg)
	})
}

// Config says where the cluster is and how to talk to it.
type Config struct {
	// Endpoints are the members' client URLs (http:// or https://).
	Endpoints []string
	// Prefix is the key prefix of this registry, ending in "/".
	Prefix string
	// Username and Password, when set, authenticate to etcd.
	Username, Password string
	// TLS, when set, is the client's TLS configuration.
	TLS *tls.Config
	// Timeout bounds each transaction (default 5s); DialTimeout the first
	// connection (default 5s).
	Timeout, DialTimeout time.Duration
	// Logger receives the watch's troubles (default slog.Default()).
	Logger *slog.Logger
}

// ParseURL reads etcd://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT…]/PREFIX with
// options tls=true, tls_ca=FILE, tls_cert=FILE, tls_key=FILE,
// password_file=FILE, timeout=DURATION, dial_timeout=DURATION.
func ParseURL(u *url.URL) (Config, error) {
	q := u.Query()
	for k := range q {
		switch k {
		case "tls", "tls_ca", "tls_cert", "tls_key", "password_file", "timeout", "dial_timeout":
		default:
			return Config{}, registry.Invalidf("etcd URL: unknown option %q (want tls, tls_ca, tls_cert, tls_key, password_file, timeout, dial_timeout)", k)
		}
	}
	if u.Host == "" {
		return Config{}, registry.Invalidf("etcd URL needs members: etcd://HOST:PORT[,HOST:PORT…]/PREFIX")
	}
	cfg := Config{Timeout: 5 * time.Second, DialTimeout: 5 * time.Second}
	secure := q.Get("tls") == "true" || q.Get("tls_ca") != "" || q.Get("tls_cert") != ""
	scheme := "http://"
	if secure {
		scheme = "https://"
	}
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" || !strings.Contains(h, ":") {
			return Config{}, registry.Invalidf("etcd URL: member %q: want HOST:PORT", h)
		}
		cfg.Endpoints = append(cfg.Endpoints, scheme+h)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix == "" {
		prefix = "modelops"
	}
	cfg.Prefix = "/" + prefix + "/"
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	if f := q.Get("password_file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return Config{}, registry.Invalidf("etcd URL: password_file: %v", err)
		}
		cfg.Password = strings.TrimSpace(string(b))
	}
	if cfg.Password != "" && cfg.Username == "" {
		return Config{}, registry.Invalidf("etcd URL: a password needs a user: etcd://USER@HOST:PORT/PREFIX?password_file=FILE")
	}
	for name, dst := range map[string]*time.Duration{"timeout": &cfg.Timeout, "dial_timeout": &cfg.DialTimeout} {
		if v := q.Get(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return Config{}, registry.Invalidf("etcd URL: %s=%q must be a duration such as 5s", name, v)
			}
			*dst = d
		}
	}
	if secure {
		info := transport.TLSInfo{TrustedCAFile: q.Get("tls_ca"), CertFile: q.Get("tls_cert"), KeyFile: q.Get("tls_key")}
		if (info.CertFile == "") != (info.KeyFile == "") {
			return Config{}, registry.Invalidf("etcd URL: tls_cert and tls_key go together")
		}
		var err error
		if info.CertFile == "" {
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			if info.TrustedCAFile != "" {
				cfg.TLS, err = info.ClientConfig()
			}
		} else {
			cfg.TLS, err = info.ClientConfig()
		}
		if err != nil {
			return Config{}, registry.Invalidf("etcd URL: TLS: %v", err)
		}
	}
	return cfg, nil
}

// Store is the MetaStore in etcd.
type Store struct {
	cfg    Config
	client *clientv3.Client
	log    *slog.Logger

	mu      sync.Mutex
	changed chan struct{}
	// woken is the etcd revision up to which watchers were woken already (by
	// this process's own commits), so the watch does not wake them twice.
	woken int64

	stop context.CancelFunc
	done chan struct{}
}

var _ registry.MetaStore = (*Store)(nil)

// Open connects to the cluster, checks that it answers, and starts the watch
// that wakes this process's watchers at every change, whoever made it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	cl, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Username:    cfg.Username,
		Password:    cfg.Password,
		TLS:         cfg.TLS,
		Logger:      zap.NewNop(),
		// Keepalives notice a member that died without closing its connections.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, (&Store{cfg: cfg}).wrap("open", err)
	}
	s := &Store{cfg: cfg, client: cl, log: cfg.Logger.With("component", "etcdmeta"), changed: make(chan struct{})}
	// One read proves the cluster is there (and the credentials good) before
	// anything is served; its revision is where the watch starts.
	octx, cancel := context.WithTimeout(ctx, cfg.DialTimeout+cfg.Timeout)
	resp, err := cl.Get(octx, cfg.Prefix+"revision")
	cancel()
	if err != nil {
		cl.Close()
		return nil, s.wrap("open", err)
	}
	wctx, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan struct{})
	go s.watch(wctx, resp.Header.Revision+1)
	return s, nil
}

// String names the store for logs, without credentials.
func (s *Store) String() string {
	return "etcd://" + strings.Join(s.cfg.Endpoints, ",") + s.cfg.Prefix
}

// Client is the etcd client, for what else a control plane keeps in etcd.
func (s *Store) Client() *clientv3.Client { return s.client }

// Close stops the watch and closes the client.
func (s *Store) Close() error {
	s.stop()
	<-s.done
	return s.client.Close()
}

// wrap turns an etcd failure into ErrUnavailable (the cluster has no quorum,
// or cannot be reached), keeping the cause; a cancelled caller stays that.
func (s *Store) wrap(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, rpctypes.ErrAuthFailed) || errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserEmpty) {
		return fmt.Errorf("%s: etcd at %s refuses these credentials: %w", op, strings.Join(s.cfg.Endpoints, ","), err)
	}
	if errors.Is(err, rpctypes.ErrRequestTooLarge) || status.Code(err) == codes.ResourceExhausted {
		return fmt.Errorf("%s: %w: etcd takes at most its --max-request-bytes (1.5 MiB by default) in one change; a model card that large does not fit: %w", op, registry.ErrTooLarge, err)
	}
	what := "cannot be reached or has no quorum"
	if errors.Is(err, rpctypes.ErrNoLeader) || strings.Contains(err.Error(), "no leader") {
		what = "has no leader (most of its members are down)"
	}
	return fmt.Errorf("%s: %w: etcd at %s %s, so the registry cannot change now (reads go on from the members left): %w",
		op, registry.ErrUnavailable, strings.Join(s.cfg.Endpoints, ","), what, err)
}

// View implements MetaStore. It reads what the cluster agreed (a linearizable
// read); when the cluster has no quorum it reads what the members left hold
// (serializable), so reads go on while changes cannot.
func (s *Store) View(ctx context.Context, fn func(registry.MetaTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	run := func(serializable bool, timeout time.Duration) error {
		tctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if !serializable {
			tctx = clientv3.WithRequireLeader(tctx)
		}
		t := &tx{ctx: tctx, s: s, serializable: serializable, readOnly: true}
		if err := fn(t); err != nil {
			return err
		}
		return t.err
	}
	err := run(false, s.cfg.Timeout/2)
	var ue *unavailableError
	if err == nil || ctx.Err() != nil || !errors.As(err, &ue) {
		return err
	}
	return run(true, s.cfg.Timeout)
}

// Update implements MetaStore: fn runs against a snapshot; its writes commit
// only if nothing it read changed meanwhile, else it runs again.
func (s *Store) Update(ctx context.Context, fn func(registry.MetaTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), s.cfg.Timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		t := &tx{ctx: tctx, s: s}
		err := fn(t)
		if err == nil {
			err = t.err
		}
		if err != nil {
			var ue *unavailableError
			if errors.As(err, &ue) {
				return ue.err
			}
			return err
		}
		if len(t.writes) == 0 {
			return nil
		}
		ok, rev, err := t.commit()
		if err != nil {
			return s.wrap("update", err)
		}
		if ok {
			s.wake(rev)
			return nil
		}
		// Another change came first; read again. Back off a little once the
		// contention is heavy, so that everyone gets through.
		if attempt >= 3 {
			select {
			case <-time.After(time.Duration(min(attempt, 20)) * time.Millisecond):
			case <-tctx.Done():
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("update: %w: other changes kept coming first for %s (%d attempts)", registry.ErrUnavailable, s.cfg.Timeout, attempt+1)
			}
		}
	}
}

// wake closes the channel of Changed, for a commit at etcd revision rev.
func (s *Store) wake(rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev > 0 && rev <= s.woken {
		return
	}
	s.woken = max(s.woken, rev)
	close(s.changed)
	s.changed = make(chan struct{})
}

// Changed implements MetaStore.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// watch follows the registry revision from etcd revision from and wakes the watchers at
// each change another process made. A watch that breaks starts again where it
// stopped; one whose revision was compacted away starts from the compaction
// and wakes everyone, who read the events again from the registry revision they
// hold: the events themselves are keys, never compacted, so nothing is lost.
func (s *Store) watch(ctx context.Context, from int64) {
	defer close(s.done)
	for attempt := 0; ctx.Err() == nil; {
		// Every change that watchers care for appends an event, and so
		// writes the revision key.
		wch := s.client.Watch(clientv3.WithRequireLeader(ctx), s.cfg.Prefix+"revision", clientv3.WithRev(from))
		for resp := range wch {
			if resp.CompactRevision > 0 {
				s.log.Warn("watch: revision compacted; resuming from the compaction", "from", from, "compacted", resp.CompactRevision)
				from = resp.CompactRevision
				s.wake(0)
				break
			}
			if err := resp.Err(); err != nil {
				level := slog.LevelWarn
				if attempt > 0 {
					level = slog.LevelDebug // said once already
				}
				if ctx.Err() == nil {
					s.log.Log(ctx, level, "watch: etcd ended it; resuming", "from", from, "err", err)
				}
				break
			}
			attempt = 0
			var newest int64
			for _, ev := range resp.Events {
				newest = max(newest, ev.Kv.ModRevision)
			}
			if newest > 0 {
				s.wake(newest)
				from = newest + 1
			}
			if resp.Header.Revision >= from {
				from = resp.Header.Revision + 1
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(min(1<<attempt, 20)) * 100 * time.Millisecond):
			attempt++
		}
	}
}

// Backup implements MetaStore. An etcd registry is backed up with etcd's own
// tools; the bbolt copy the embedded registry gives is not made here.
func (s *Store) Backup(context.Context, io.Writer) (int64, error) {
	return 0, registry.Invalidf("backup: the registry is in etcd (%s); take a snapshot with `etcdctl snapshot save FILE`, or copy it with `modelctl migrate`", s)
}

// unavailableError carries an etcd failure out of fn, through code that may
// wrap it, so that View can tell it from fn's own errors.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// tx is one transaction: reads at one etcd revision, writes buffered until
// commit, and a record of what was read so the commit can check it is unchanged.
type tx struct {
	ctx          context.Context
	s            *Store
	serializable bool
	readOnly     bool

	rev    int64 // the etcd revision every read sees (0 before the first)
	err    error // a failed read that returned no error of its own (Revision)
	reads  map[string]bool
	spans  [][2]string // [start, end) ranges read
	writes map[string][]byte
	order  []string // keys in the order written
}

func (t *tx) key(parts ...string) string { return t.s.cfg.Prefix + strings.Join(parts, "/") }

func (t *tx) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.rev > 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	if t.serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := t.s.client.Get(t.ctx, key, opts...)
	if err != nil {
		if ctxErr := t.ctx.Err(); ctxErr != nil && errors.Is(ctxErr, context.Canceled) {
			return nil, ctxErr
		}
		return nil, &unavailableError{t.s.wrap("read", err)}
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

// one reads a key: its value, or nil when absent.
func (t *tx) one(key string) ([]byte, error) {
	if v, ok := t.writes[key]; ok {
		return v, nil
	}
	resp, err := t.get(key)
	if err != nil {
		return nil, err
	}
	if !t.readOnly {
		if t.reads == nil {
			t.reads = map[string]bool{}
		}
		t.reads[key] = true
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

// span records that [start, end) was read.
func (t *tx) span(start, end string) {
	if !t.readOnly {
		t.spans = append(t.spans, [2]string{start, end})
	}
}

// all reads every key under prefix, this transaction's writes included, by key.
func (t *tx) all(prefix string) ([]string, [][]byte, error) {
	resp, err := t.get(prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, nil, err
	}
	t.span(prefix, clientv3.GetPrefixRangeEnd(prefix))
	vals := map[string][]byte{}
	for _, kv := range resp.Kvs {
		vals[string(kv.Key)] = kv.Value
	}
	for k, v := range t.writes {
		if strings.HasPrefix(k, prefix) {
			vals[k] = v
		}
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = vals[k]
	}
	return keys, out, nil
}

func (t *tx) put(key string, v any) error {
	if t.readOnly {
		return fmt.Errorf("etcdmeta: write in a read-only transaction")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if t.writes == nil {
		t.writes = map[string][]byte{}
	}
	if _, seen := t.writes[key]; !seen {
		t.order = append(t.order, key)
	}
	t.writes[key] = b
	return nil
}

// commit writes everything at once if nothing read changed since t.rev. It
// returns whether it did, and the etcd revision of the commit.
func (t *tx) commit() (bool, int64, error) {
	var cmps []clientv3.Cmp
	if t.rev > 0 {
		for k := range t.reads {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "<", t.rev+1))
		}
		for _, sp := range t.spans {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(sp[0]), "<", t.rev+1).WithRange(sp[1]))
		}
	}
	ops := make([]clientv3.Op, 0, len(t.order))
	for _, k := range t.order {
		ops = append(ops, clientv3.OpPut(k, string(t.writes[k])))
	}
	resp, err := t.s.client.Txn(t.ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, 0, err
	}
	return resp.Succeeded, resp.Header.Revision, nil
}

func decode[T any](what string, b []byte) (*T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: corrupt record: %w", what, err)
	}
	return &v, nil
}

func eventKey(rev uint64) string { return fmt.Sprintf("%020d", rev) }

func versionKey(n int) string { return fmt.Sprintf("%010d", n) }

func (t *tx) Revision() uint64 {
	b, err := t.one(t.key("revision"))
	if err != nil {
		// Revision has no error of its own: the transaction fails with it.
		t.err = err
		return 0
	}
	if b == nil {
		return 0
	}
	n, _ := strconv.ParseUint(string(b), 10, 64)
	return n
}

func (t *tx) Model(name string) (*registry.Model, error) {
	b, err := t.one(t.key("models", name))
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("model %q: %w", name, registry.ErrNotFound)
	}
	return decode[registry.Model](fmt.Sprintf("model %q", name), b)
}

func (t *tx) Models() ([]registry.Model, error) {
	keys, vals, err := t.all(t.key("models") + "/")
	if err != nil {
		return nil, err
	}
	out := make([]registry.Model, 0, len(vals))
	for i, b := range vals {
		m, err := decode[registry.Model](fmt.Sprintf("model %q", strings.TrimPrefix(keys[i], t.key("models")+"/")), b)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, nil
}

func (t *tx) PutModel(m *registry.Model) error {
	if err := registry.CheckModelName(m.Name); err != nil {
		return err
	}
	return t.put(t.key("models", m.Name), m)
}

func (t *tx) Version(model string, n int) (*registry.Version, error) {
	var b []byte
	if n > 0 && registry.CheckModelName(model) == nil {
		var err error
		if b, err = t.one(t.key("versions", model, versionKey(n))); err != nil {
			return nil, err
		}
	}
	if b == nil {
		return nil, fmt.Errorf("model %q version %d: %w", model, n, registry.ErrNotFound)
	}
	return decode[registry.Version](fmt.Sprintf("model %q version %d", model, n), b)
}

func (t *tx) Versions(model string) ([]registry.Version, error) {
	if registry.CheckModelName(model) != nil {
		return nil, nil
	}
	keys, vals, err := t.all(t.key("versions", model) + "/")
	if err != nil {
		return nil, err
	}
	out := make([]registry.Version, 0, len(vals))
	for i, b := range vals {
		v, err := decode[registry.Version](fmt.Sprintf("model %q version %s", model, keys[i][strings.LastIndex(keys[i], "/")+1:]), b)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, nil
}

func (t *tx) PutVersion(v *registry.Version) error {
	if err := registry.CheckModelName(v.Model); err != nil {
		return err
	}
	if v.Number <= 0 {
		return registry.Invalidf("version number %d: want 1 or more", v.Number)
	}
	return t.put(t.key("versions", v.Model, versionKey(v.Number)), v)
}

func (t *tx) AppendEvent(e *registry.Event) error {
	b, err := t.one(t.key("revision"))
	if err != nil {
		return err
	}
	var rev uint64
	if b != nil {
		if rev, err = strconv.ParseUint(string(b), 10, 64); err != nil {
			return fmt.Errorf("registry revision: corrupt record %q", b)
		}
	}
	rev++
	e.Revision = rev
	if t.writes == nil {
		t.writes = map[string][]byte{}
	}
	if _, seen := t.writes[t.key("revision")]; !seen {
		t.order = append(t.order, t.key("revision"))
	}
	t.writes[t.key("revision")] = []byte(strconv.FormatUint(rev, 10))
	return t.put(t.key("events", eventKey(rev)), e)
}

// eventPage is how many events one read fetches.
const eventPage = 256

func (t *tx) Events(since uint64, limit int, keep func(*registry.Event) bool) ([]registry.Event, error) {
	var out []registry.Event
	if since == math.MaxUint64 {
		return nil, nil // nothing comes after the last revision there can be (since+1 would wrap to 0)
	}
	start, end := t.key("events", eventKey(since+1)), clientv3.GetPrefixRangeEnd(t.key("events")+"/")
	t.span(start, end)
	for len(out) < limit {
		resp, err := t.get(start, clientv3.WithRange(end), clientv3.WithLimit(eventPage), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			e, err := decode[registry.Event](fmt.Sprintf("event %s", kv.Key), kv.Value)
			if err != nil {
				return nil, err
			}
			if keep(e) && len(out) < limit {
				out = append(out, *e)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	// Events this transaction appended are the newest.
	for _, e := range t.appended(since) {
		if keep(&e) && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (t *tx) LatestEvents(since uint64, n int, keep func(*registry.Event) bool) ([]registry.Event, error) {
	if since == math.MaxUint64 {
		return nil, nil // as in Events
	}
	var out []registry.Event
	own := t.appended(since)
	for i := len(own) - 1; i >= 0 && len(out) < n; i-- {
		if keep(&own[i]) {
			out = append(out, own[i])
		}
	}
	start, end := t.key("events", eventKey(since+1)), clientv3.GetPrefixRangeEnd(t.key("events")+"/")
	t.span(start, end)
	for len(out) < n {
		resp, err := t.get(start, clientv3.WithRange(end), clientv3.WithLimit(eventPage), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			e, err := decode[registry.Event](fmt.Sprintf("event %s", kv.Key), kv.Value)
			if err != nil {
				return nil, err
			}
			if keep(e) && len(out) < n {
				out = append(out, *e)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key)
	}
	slices.Reverse(out)
	return out, nil
}

// appended returns the events this transaction wrote after since, in order.
func (t *tx) appended(since uint64) []registry.Event {
	var out []registry.Event
	prefix := t.key("events") + "/"
	for _, k := range t.order {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		var e registry.Event
		if json.Unmarshal(t.writes[k], &e) == nil && e.Revision > since {
			out = append(out, e)
		}
	}
	return out
}

func (t *tx) Token(id string) (*registry.Token, error) {
	var b []byte
	if id != "" && !strings.ContainsAny(id, "/\x00") {
		var err error
		if b, err = t.one(t.key("tokens", id)); err != nil {
			return nil, err
		}
	}
	if b == nil {
		return nil, fmt.Errorf("token %q: %w", id, registry.ErrNotFound)
	}
	return decode[registry.Token](fmt.Sprintf("token %q", id), b)
}

func (t *tx) Tokens() ([]registry.Token, error) {
	keys, vals, err := t.all(t.key("tokens") + "/")
	if err != nil {
		return nil, err
	}
	out := make([]registry.Token, 0, len(vals))
	for i, b := range vals {
		tk, err := decode[registry.Token](fmt.Sprintf("token %q", strings.TrimPrefix(keys[i], t.key("tokens")+"/")), b)
		if err != nil {
			return nil, err
		}
		out = append(out, *tk)
	}
	return out, nil
}

func (t *tx) PutToken(tk *registry.Token) error {
	if tk.ID == "" || strings.ContainsAny(tk.ID, "/\x00") {
		return registry.Invalidf("token id %q", tk.ID)
	}
	return t.put(t.key("tokens", tk.ID), tk)
}

// PutSession keeps a dashboard session for ttl, on a lease of its own, so that
// etcd forgets it by itself (api.SessionStore).
func (s *Store) PutSession(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), s.cfg.Timeout)
	defer cancel()
	lease, err := s.client.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return s.wrap("sign in", err)
	}
	if _, err := s.client.Put(ctx, s.cfg.Prefix+"sessions/"+key, string(value), clientv3.WithLease(lease.ID)); err != nil {
		return s.wrap("sign in", err)
	}
	return nil
}

// Session returns a live session (api.SessionStore); without quorum it is read
// from the members left.
func (s *Store) Session(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.View(ctx, func(mt registry.MetaTx) error {
		b, err := mt.(*tx).one(s.cfg.Prefix + "sessions/" + key)
		v = b
		return err
	})
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("session: %w", registry.ErrNotFound)
	}
	return v, nil
}

// DeleteSession ends a session and its lease (api.SessionStore).
func (s *Store) DeleteSession(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), s.cfg.Timeout)
	defer cancel()
	resp, err := s.client.Get(ctx, s.cfg.Prefix+"sessions/"+key)
	if err != nil {
		return s.wrap("sign out", err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	if _, err := s.client.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		return s.wrap("sign out", err)
	}
	return nil
}
