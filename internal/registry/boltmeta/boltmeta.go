// Package boltmeta is the registry's metadata in one bbolt file (bolt:///DIR/registry.db),
// owned by one process: the embedded default. Nothing else opens the file.
package boltmeta

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/modelops/modelops/internal/registry"
)

func init() {
	registry.RegisterMetaDriver("bolt", func(_ context.Context, u *url.URL) (registry.MetaStore, error) {
		p := u.Path
		if u.Host != "" && u.Host != "localhost" {
			// bolt://relative/registry.db: take it as relative, as file:// is.
			p = filepath.Join(u.Host, u.Path)
		}
		if p == "" {
			return nil, registry.Invalidf("bolt URL needs a file: bolt:///DIR/registry.db")
		}
		return Open(p)
	})
}

var (
	bucketMeta     = []byte("meta")
	bucketModels   = []byte("models")
	bucketVersions = []byte("versions")
	bucketEvents   = []byte("events")
	bucketTokens   = []byte("tokens")
	keyRevision    = []byte("revision")
)

// Store is the MetaStore in a bbolt file: models, versions (a bucket per
// model), events keyed by revision, tokens, and the revision itself.
type Store struct {
	db *bolt.DB

	mu      sync.Mutex
	changed chan struct{}
}

var _ registry.MetaStore = (*Store)(nil)

// errDamagedFile means the bbolt file cannot be a sound registry.
var errDamagedFile = errors.New("damaged")

// Open opens (creating if needed) the bbolt file at path. A damaged
// file is an error wrapping errDamagedFile, never a panic or a fault: bbolt
// trusts its file, and panics (a zeroed freelist page) or faults (pages a
// truncated file no longer has, read through its mmap) on some damage. So the
// meta pages are read first, as bbolt will read them, and the file refused
// when it is shorter than they say; then the whole file is checked once
// (tx.Check, O(file)), with panics and memory faults recovered.
func Open(path string) (*Store, error) {
	s, err := open(path)
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("open registry %s: another process holds it (is a control plane already running on this data directory?)", path)
	case errors.Is(err, errDamagedFile) || errors.Is(err, bolt.ErrInvalid) || errors.Is(err, bolt.ErrChecksum) || errors.Is(err, bolt.ErrVersionMismatch):
		return nil, fmt.Errorf("open registry %s: %w: the file is not a registry or is damaged; move it aside and put a backup in its place (`modelctl backup` makes one)", path, err)
	case err != nil:
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	return s, nil
}

func open(path string) (_ *Store, err error) {
	if err := precheckBolt(path); err != nil {
		return nil, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			// bbolt may still hold the file (and its lock): the process is
			// expected to stop on this error.
			err = fmt.Errorf("%w: bbolt: %v", errDamagedFile, p)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("%w: %v", errDamagedFile, err)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketModels, bucketVersions, bucketEvents, bucketTokens} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, changed: make(chan struct{})}, nil
}

// DB exposes the bbolt handle, for consistency checks.
func (s *Store) DB() *bolt.DB { return s.db }

// View implements MetaStore.
func (s *Store) View(ctx context.Context, fn func(registry.MetaTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Update implements MetaStore, waking the watchers once the change committed.
// bbolt has one writer at a time, so fn runs once.
func (s *Store) Update(ctx context.Context, fn func(registry.MetaTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) }); err != nil {
		return err
	}
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// Changed implements MetaStore.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Backup implements MetaStore: a consistent copy of the file.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Close implements MetaStore.
func (s *Store) Close() error { return s.db.Close() }

// Check runs bbolt's consistency check on the open file.
func (s *Store) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

// CheckFile opens a bbolt file (a backup, say) read-only and runs its
// consistency check.
func CheckFile(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return (&Store{db: db}).Check()
}

type boltTx struct{ tx *bolt.Tx }

func u64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

func (t boltTx) Revision() uint64 {
	v := t.tx.Bucket(bucketMeta).Get(keyRevision)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (t boltTx) Model(name string) (*registry.Model, error) {
	v := t.tx.Bucket(bucketModels).Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("model %q: %w", name, registry.ErrNotFound)
	}
	m := &registry.Model{}
	if err := json.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("model %q: corrupt record: %w", name, err)
	}
	return m, nil
}

func (t boltTx) Models() ([]registry.Model, error) {
	return records[registry.Model](t.tx.Bucket(bucketModels), func(k []byte) string { return fmt.Sprintf("model %q", k) })
}

func (t boltTx) PutModel(m *registry.Model) error {
	return putJSON(t.tx.Bucket(bucketModels), []byte(m.Name), m)
}

func (t boltTx) Version(model string, n int) (*registry.Version, error) {
	b := t.tx.Bucket(bucketVersions).Bucket([]byte(model))
	var v []byte
	if b != nil && n > 0 {
		v = b.Get(u64(uint64(n)))
	}
	if v == nil {
		return nil, fmt.Errorf("model %q version %d: %w", model, n, registry.ErrNotFound)
	}
	ver := &registry.Version{}
	if err := json.Unmarshal(v, ver); err != nil {
		return nil, fmt.Errorf("model %q version %d: corrupt record: %w", model, n, err)
	}
	return ver, nil
}

func (t boltTx) Versions(model string) ([]registry.Version, error) {
	b := t.tx.Bucket(bucketVersions).Bucket([]byte(model))
	if b == nil {
		return nil, nil
	}
	return records[registry.Version](b, func(k []byte) string {
		return fmt.Sprintf("model %q version %d", model, binary.BigEndian.Uint64(k))
	})
}

func (t boltTx) PutVersion(v *registry.Version) error {
	b, err := t.tx.Bucket(bucketVersions).CreateBucketIfNotExists([]byte(v.Model))
	if err != nil {
		return err
	}
	return putJSON(b, u64(uint64(v.Number)), v)
}

func (t boltTx) AppendEvent(e *registry.Event) error {
	rev := t.Revision() + 1
	if err := t.tx.Bucket(bucketMeta).Put(keyRevision, u64(rev)); err != nil {
		return err
	}
	e.Revision = rev
	return putJSON(t.tx.Bucket(bucketEvents), u64(rev), e)
}

func (t boltTx) Events(since uint64, limit int, keep func(*registry.Event) bool) ([]registry.Event, error) {
	var out []registry.Event
	c := t.tx.Bucket(bucketEvents).Cursor()
	if since == math.MaxUint64 {
		return nil, nil // nothing comes after the last revision there can be (since+1 would wrap to 0)
	}
	for k, v := c.Seek(u64(since + 1)); k != nil && len(out) < limit; k, v = c.Next() {
		var e registry.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("event %x: corrupt record: %w", k, err)
		}
		if keep(&e) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (t boltTx) LatestEvents(since uint64, n int, keep func(*registry.Event) bool) ([]registry.Event, error) {
	var out []registry.Event
	c := t.tx.Bucket(bucketEvents).Cursor()
	for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
		if binary.BigEndian.Uint64(k) <= since {
			break
		}
		var e registry.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("event %x: corrupt record: %w", k, err)
		}
		if keep(&e) {
			out = append(out, e)
		}
	}
	slices.Reverse(out)
	return out, nil
}

func (t boltTx) Token(id string) (*registry.Token, error) {
	v := t.tx.Bucket(bucketTokens).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("token %q: %w", id, registry.ErrNotFound)
	}
	var tk registry.Token
	if err := json.Unmarshal(v, &tk); err != nil {
		return nil, fmt.Errorf("token %q: corrupt record: %w", id, err)
	}
	return &tk, nil
}

func (t boltTx) Tokens() ([]registry.Token, error) {
	return records[registry.Token](t.tx.Bucket(bucketTokens), func(k []byte) string { return fmt.Sprintf("token %q", k) })
}

func (t boltTx) PutToken(tk *registry.Token) error {
	return putJSON(t.tx.Bucket(bucketTokens), []byte(tk.ID), tk)
}

// records decodes every JSON record in b; name(key) says which one was corrupt.
func records[T any](b *bolt.Bucket, name func(key []byte) string) ([]T, error) {
	var out []T
	err := b.ForEach(func(k, v []byte) error {
		var r T
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%s: corrupt record: %w", name(k), err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// putJSON stores v as JSON under key in b.
func putJSON(b *bolt.Bucket, key []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, buf)
}

// bbolt's file format, as far as precheckBolt reads it: two meta pages at the
// start, each a page header (16 bytes) then the meta.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSum    = 56 // bytes of the meta the checksum (FNV-64a) covers
	boltNoFreelist = ^uint64(0)
	boltBranchPage = 0x01
	boltLeafPage   = 0x02
	boltFreePage   = 0x10
)

type boltMeta struct {
	pageSize                    int64
	root, freelist, pages, txid uint64
}

// precheckBolt refuses an existing bbolt file that bbolt would fault or panic
// on: empty, neither meta page valid (magic, version, checksum), shorter than
// its meta says, or its root or freelist page of the wrong kind.
func precheckBolt(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new registry
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size == 0 {
		return fmt.Errorf("%w: it is empty", errDamagedFile)
	}
	read := func(off int64) (boltMeta, bool) {
		b := make([]byte, boltPageHeader+boltMetaSum+8)
		if _, err := f.ReadAt(b, off); err != nil {
			return boltMeta{}, false
		}
		m := b[boltPageHeader:]
		le := binary.LittleEndian
		h := fnv.New64a()
		h.Write(m[:boltMetaSum])
		if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion || le.Uint64(m[boltMetaSum:]) != h.Sum64() {
			return boltMeta{}, false
		}
		return boltMeta{pageSize: int64(le.Uint32(m[8:])), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]), pages: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
	}
	m0, ok0 := read(0)
	second := int64(os.Getpagesize())
	if ok0 {
		second = m0.pageSize
	}
	m1, ok1 := read(second)
	m := m0
	switch {
	case !ok0 && !ok1:
		return fmt.Errorf("%w: neither meta page is valid (wrong magic, version or checksum)", errDamagedFile)
	case !ok0 || (ok1 && m1.txid > m0.txid):
		m = m1
	}
	if m.pageSize < 512 || m.pageSize > 1<<20 || m.pageSize&(m.pageSize-1) != 0 {
		return fmt.Errorf("%w: its meta page says pages of %d bytes", errDamagedFile, m.pageSize)
	}
	if m.pages < 4 || m.pages > uint64(size/m.pageSize) {
		return fmt.Errorf("%w: it is %d bytes, shorter than the %d pages of %d bytes its meta page says it holds (truncated?)", errDamagedFile, size, m.pages, m.pageSize)
	}
	kind := func(page uint64) uint16 {
		b := make([]byte, 2)
		f.ReadAt(b, int64(page)*m.pageSize+8)
		return binary.LittleEndian.Uint16(b)
	}
	if m.root >= m.pages || (kind(m.root) != boltBranchPage && kind(m.root) != boltLeafPage) {
		return fmt.Errorf("%w: its root page %d is not a page of the tree", errDamagedFile, m.root)
	}
	if m.freelist != boltNoFreelist && (m.freelist >= m.pages || kind(m.freelist) != boltFreePage) {
		return fmt.Errorf("%w: its freelist page %d is not a freelist", errDamagedFile, m.freelist)
	}
	return nil
}
