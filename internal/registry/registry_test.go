package registry_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/registry/boltmeta"
	"github.com/modelops/modelops/internal/registry/fileblob"
	_ "github.com/modelops/modelops/internal/registry/s3blob"
	"github.com/modelops/modelops/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.InitORT()
	os.Exit(m.Run())
}

// MustOpen opens a registry in a temp dir; see testutil.MustRegistry.
func MustOpen(tb testing.TB) (*registry.Registry, string) {
	tb.Helper()
	return testutil.MustRegistry(tb)
}

// MustCheck runs bbolt's consistency check.
func MustCheck(tb testing.TB, r *registry.Registry) {
	tb.Helper()
	if err := r.Meta.(*boltmeta.Store).Check(); err != nil {
		tb.Fatalf("bbolt check: %v", err)
	}
}

func push(t *testing.T, r *registry.Registry, model string, m testutil.Model) (*registry.PushResult, error) {
	t.Helper()
	data, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	return r.Push(context.Background(), registry.PushRequest{Model: model, Digest: m.Digest, Artifact: bytes.NewReader(data), Card: m.Card, Actor: "tester"})
}

func mustPush(t *testing.T, r *registry.Registry, model string, m testutil.Model) *registry.Version {
	t.Helper()
	res, err := push(t, r, model, m)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return res.Version
}

func blobCount(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "artifacts", "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestPushPromoteRollback(t *testing.T) {
	ctx := context.Background()
	r, _ := MustOpen(t)
	v1 := mustPush(t, r, "calling-score", testutil.MustModel(t, 1))
	v2 := mustPush(t, r, "calling-score", testutil.MustModel(t, 2))
	if v1.Number != 1 || v2.Number != 2 {
		t.Fatalf("versions numbered %d, %d; want 1, 2", v1.Number, v2.Number)
	}
	d, err := r.Deployment(ctx, "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	if d.Production != nil {
		t.Fatalf("production = %+v before any promotion", d.Production)
	}
	if _, err := r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 1}); err != nil {
		t.Fatal(err)
	}
	ev, err := r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2, Actor: "alice", Reason: "better"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != registry.EventPromoted || ev.From != 1 || ev.To != 2 || ev.Actor != "alice" {
		t.Fatalf("promote event = %+v", ev)
	}
	d, _ = r.Deployment(ctx, "calling-score")
	if d.Production.Version != 2 || d.Production.Digest != v2.Digest {
		t.Fatalf("deployment = %+v, want v2 %s", d.Production, v2.Digest)
	}
	ev, err = r.Rollback(ctx, registry.AliasRequest{Model: "calling-score"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != registry.EventRolledBack || ev.From != 2 || ev.To != 1 {
		t.Fatalf("rollback event = %+v", ev)
	}
	if _, err := r.Rollback(ctx, registry.AliasRequest{Model: "calling-score"}); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("second rollback with no earlier version: err = %v, want ErrConflict", err)
	}
	evs, err := r.Events(ctx, registry.EventQuery{Model: "calling-score"})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for i, e := range evs {
		kinds = append(kinds, e.Kind)
		if e.Revision != uint64(i+1) {
			t.Fatalf("event %d has revision %d, want %d", i, e.Revision, i+1)
		}
	}
	if got := strings.Join(kinds, ","); got != "pushed,pushed,promoted,promoted,rolled_back" {
		t.Fatalf("history = %s", got)
	}
}

// promotedInTurn opens a registry with calling-score v1…vn, each promoted in
// turn: vn is production, with v1…vn-1 before it.
func promotedInTurn(t *testing.T, n int) *registry.Registry {
	t.Helper()
	r, _ := MustOpen(t)
	for seed := uint64(1); seed <= uint64(n); seed++ {
		mustPush(t, r, "calling-score", testutil.MustModel(t, seed))
	}
	for v := 1; v <= n; v++ {
		if _, err := r.Promote(context.Background(), registry.AliasRequest{Model: "calling-score", Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestRollbackTo(t *testing.T) {
	ctx := context.Background()
	r := promotedInTurn(t, 3)
	if _, err := r.Rollback(ctx, registry.AliasRequest{Model: "calling-score", Version: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Rollback(ctx, registry.AliasRequest{Model: "calling-score", Version: 9}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("rollback to a missing version: err = %v, want ErrNotFound", err)
	}
	m, _ := r.Model(ctx, "calling-score")
	if m.Production != 1 {
		t.Fatalf("production = %d, want 1", m.Production)
	}
}

// Rolling back goes to the previous good version: one the monitor rejected since
// (here as a canary) is skipped, as an automatic rollback skips it, and reaching
// it with --to takes force, as a promote of it does.
func TestRollbackSkipsARejectedVersion(t *testing.T) {
	ctx := context.Background()
	r := promotedInTurn(t, 3)
	if _, err := r.SetCanary(ctx, registry.CanaryRequest{Model: "calling-score", Version: 2, Traffic: 10, Mode: registry.ModeAB}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AutoRollback(ctx, registry.Decision{Model: "calling-score", Version: 2, Candidate: true, Reason: "error rate 0.5"}); err != nil {
		t.Fatal(err)
	}
	ev, err := r.Rollback(ctx, registry.AliasRequest{Model: "calling-score"})
	if err != nil || ev.From != 3 || ev.To != 1 {
		t.Fatalf("rollback from v3 with v2 rejected: %+v %v, want v3 → v1", ev, err)
	}
	// Nothing good before v1: refused, naming what was passed over.
	if _, err := r.Rollback(ctx, registry.AliasRequest{Model: "calling-score"}); !errors.Is(err, registry.ErrConflict) || !strings.Contains(err.Error(), "no earlier good") {
		t.Fatalf("rollback from v1: %v, want a conflict", err)
	}
	if _, err := r.Rollback(ctx, registry.AliasRequest{Model: "calling-score", Version: 2}); !errors.Is(err, registry.ErrConflict) || !strings.Contains(err.Error(), "rejected by the monitor (error rate 0.5)") {
		t.Fatalf("rollback --to the rejected v2: %v, want a conflict naming why", err)
	}
	if m, _ := r.Model(ctx, "calling-score"); m.Production != 1 {
		t.Fatalf("production v%d after refused rollbacks, want v1", m.Production)
	}
	if _, err := r.Rollback(ctx, registry.AliasRequest{Model: "calling-score", Version: 2, Force: true}); err != nil {
		t.Fatal(err)
	}
	if m, _ := r.Model(ctx, "calling-score"); m.Production != 2 || m.Rejected[2] != "" {
		t.Fatalf("after a forced rollback: production v%d, rejected %v; want v2, no longer rejected", m.Production, m.Rejected)
	}
}

func TestStaleExpectRevisionConflicts(t *testing.T) {
	ctx := context.Background()
	r, _ := MustOpen(t)
	mustPush(t, r, "calling-score", testutil.MustModel(t, 1))
	mustPush(t, r, "calling-score", testutil.MustModel(t, 2))
	m, _ := r.Model(ctx, "calling-score")
	if _, err := r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 1, ExpectRevision: m.Revision}); err != nil {
		t.Fatalf("promote at the current revision: %v", err)
	}
	_, err := r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2, ExpectRevision: m.Revision})
	if !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("promote with a stale revision: err = %v, want ErrConflict", err)
	}
	after, _ := r.Model(ctx, "calling-score")
	if after.Production != 1 {
		t.Fatalf("a refused promote moved production to %d", after.Production)
	}
	if _, err := r.Rollback(ctx, registry.AliasRequest{Model: "calling-score", ExpectRevision: m.Revision}); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("rollback with a stale revision: err = %v, want ErrConflict", err)
	}
}

func TestPushRefusesBadArtifacts(t *testing.T) {
	good := testutil.MustModel(t, 1)
	goodData, _ := os.ReadFile(good.Path)
	wide := testutil.MustModel(t, 2, 40, 8, 1)
	twoOut := testutil.MustModel(t, 3, 39, 8, 2)

	tests := []struct {
		name   string
		model  string
		data   []byte
		digest string
		card   []byte
		kind   error
		want   string
	}{
		{"not onnx", "calling-score", []byte("this is not an onnx file"), "", nil, registry.ErrInvalidModel, "ONNX Runtime cannot load"},
		{"wrong input width", "calling-score", mustRead(t, wide.Path), "", nil, registry.ErrInvalidModel, `input is "input" float32 [batch,40], model expects "input" float32 [batch,39]`},
		{"wrong output width", "calling-score", mustRead(t, twoOut.Path), "", nil, registry.ErrInvalidModel, "output"},
		{"wrong sha256", "calling-score", goodData, strings.Repeat("ab", 32), nil, registry.ErrDigestMismatch, "hashes to sha256"},
		{"bad digest syntax", "calling-score", goodData, "xyz", nil, registry.ErrInvalid, "64 lower-case hex"},
		{"empty", "calling-score", nil, "", nil, registry.ErrInvalid, "empty"},
		{"malformed card", "calling-score", goodData, "", []byte("{not json"), registry.ErrInvalid, "invalid model card"},
		{"card for another width", "calling-score", goodData, "", []byte(`{"features":["a","b"]}`), registry.ErrInvalidModel, "card names 2 features"},
		{"hostile name", "../etc", goodData, "", nil, registry.ErrInvalid, "must match"},
		{"upper-case name", "Calling", goodData, "", nil, registry.ErrInvalid, "must match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, dir := MustOpen(t)
			digest := tt.digest
			if digest == "" {
				digest = testutil.MustDigest(t, tt.data)
			}
			_, err := r.Push(context.Background(), registry.PushRequest{Model: tt.model, Digest: digest, Artifact: bytes.NewReader(tt.data), Card: tt.card})
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to say %q", err, tt.want)
			}
			if ms, _ := r.Models(context.Background()); len(ms) != 0 {
				t.Fatalf("a refused push left models %+v", ms)
			}
			if n := blobCount(t, dir); n != 0 {
				t.Fatalf("a refused push left %d blobs under blobs/sha256", n)
			}
			if rev, _ := r.Revision(); rev != 0 {
				t.Fatalf("a refused push moved the revision to %d", rev)
			}
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPushRefusesGoldenMismatch(t *testing.T) {
	r, _ := MustOpen(t)
	m := testutil.MustModel(t, 1)
	// A card whose golden outputs belong to another model: the artifact's own
	// outputs differ, as they would for a tampered weight.
	other := testutil.MustModel(t, 2)
	_, err := r.Push(context.Background(), registry.PushRequest{Model: "calling-score", Digest: m.Digest, Artifact: bytes.NewReader(mustRead(t, m.Path)), Card: other.Card})
	if !errors.Is(err, registry.ErrInvalidModel) || !strings.Contains(err.Error(), "golden[0] output[0]") {
		t.Fatalf("err = %v, want invalid model naming golden[0] output[0]", err)
	}
}

func TestSignatureFixedByFirstVersion(t *testing.T) {
	r, _ := MustOpen(t)
	mustPush(t, r, "churn", testutil.MustModel(t, 1, 12, 4, 1))
	_, err := push(t, r, "churn", testutil.MustModel(t, 2, 13, 4, 1))
	if !errors.Is(err, registry.ErrInvalidModel) {
		t.Fatalf("push of another signature: err = %v, want ErrInvalidModel", err)
	}
	vs, _ := r.Versions(context.Background(), "churn")
	if len(vs) != 1 {
		t.Fatalf("%d versions, want 1", len(vs))
	}
}

func TestPushSameBytesTwiceIsOneVersion(t *testing.T) {
	r, _ := MustOpen(t)
	m := testutil.MustModel(t, 1)
	first, err := push(t, r, "calling-score", m)
	if err != nil {
		t.Fatal(err)
	}
	again, err := push(t, r, "calling-score", m)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || again.Created || again.Version.Number != first.Version.Number {
		t.Fatalf("first %+v, again %+v: a retried push must name the same version", first, again)
	}
}

func TestArtifactIsVerifiedOnRead(t *testing.T) {
	ctx := context.Background()
	r, dir := MustOpen(t)
	v := mustPush(t, r, "calling-score", testutil.MustModel(t, 1))
	p := filepath.Join(dir, "artifacts", "blobs", "sha256", v.Digest)
	data := mustRead(t, p)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, rc, err := r.OpenArtifact(ctx, "calling-score", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var sink bytes.Buffer
	if _, err := sink.ReadFrom(rc); !errors.Is(err, registry.ErrDigestMismatch) {
		t.Fatalf("reading a corrupted blob: err = %v, want ErrDigestMismatch", err)
	}
}

func TestWatchResumesFromRevision(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, _ := MustOpen(t)
	mustPush(t, r, "calling-score", testutil.MustModel(t, 1))
	mustPush(t, r, "calling-score", testutil.MustModel(t, 2))

	events := r.Watch(ctx, 1)
	if e := <-events; e.Revision != 2 || e.Kind != registry.EventPushed {
		t.Fatalf("first event after revision 1 = %+v, want revision 2 pushed", e)
	}
	go r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2})
	select {
	case e := <-events:
		if e.Revision != 3 || e.Kind != registry.EventPromoted {
			t.Fatalf("live event = %+v, want revision 3 promoted", e)
		}
	case <-ctx.Done():
		t.Fatal("no live event")
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() *registry.Registry {
		r, err := openIn(t, dir)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := open()
	mustPush(t, r, "calling-score", testutil.MustModel(t, 1))
	if _, err := r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 1}); err != nil {
		t.Fatal(err)
	}
	r.Close()

	r = open()
	defer r.Close()
	defer MustCheck(t, r)
	d, err := r.Deployment(ctx, "calling-score")
	if err != nil || d.Production == nil || d.Production.Version != 1 {
		t.Fatalf("after reopen: deployment %+v, err %v", d, err)
	}
	if rev, _ := r.Revision(); rev != 2 {
		t.Fatalf("after reopen: revision %d, want 2", rev)
	}
}

// A second registry on a data directory in use fails with a message that says
// so, and leaves the first one's uploads in flight alone.
func TestSecondOpenOfTheSameDirectoryFailsAndTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	first, err := openIn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	inFlight := filepath.Join(dir, "staging", "upload-123")
	if err := os.WriteFile(inFlight, []byte("half an upload"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openIn(t, dir); err == nil || !strings.Contains(err.Error(), "another process holds it") {
		t.Fatalf("second open: %v, want it refused as held by another process", err)
	}
	if _, err := os.Stat(inFlight); err != nil {
		t.Fatalf("the refused open removed the first registry's upload in flight: %v", err)
	}
}

// openIn opens the registry of a data directory, with its artifacts beside it.
func openIn(t *testing.T, dir string) (*registry.Registry, error) {
	t.Helper()
	blobs, err := fileblob.New(filepath.Join(dir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	r := registry.New(filepath.Join(dir, "registry.db"), blobs, loader.Verifier{})
	return r, r.Open()
}

// A registry file that is not bbolt, or is damaged, stops the start with what
// to do about it, and is left as it was.
func TestOpenOfADamagedFileSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	junk := bytes.Repeat([]byte("not a registry "), 4096)
	if err := os.WriteFile(filepath.Join(dir, "registry.db"), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openIn(t, dir); err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "backup") {
		t.Fatalf("open of a damaged registry file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "registry.db")); !bytes.Equal(b, junk) {
		t.Fatal("the damaged file was changed")
	}
}

// Asking for what already holds (promote the production version, clear an
// absent canary, set the same canary or blend) succeeds as unchanged: the
// model keeps its revision and the history gains no event.
func TestIdempotentRequestsChangeNothing(t *testing.T) {
	ctx := context.Background()
	r := promotedInTurn(t, 2)
	before, err := r.Model(ctx, "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	w := 0.5
	if _, err := r.SetBlend(ctx, registry.BlendRequest{Model: "calling-score", Weight: w}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetCanary(ctx, registry.CanaryRequest{Model: "calling-score", Version: 1, Traffic: 10, Mode: registry.ModeShadow}); err != nil {
		t.Fatal(err)
	}
	before, _ = r.Model(ctx, "calling-score")
	evsBefore, _ := r.Events(ctx, registry.EventQuery{Model: "calling-score"})
	for _, tc := range []struct {
		name string
		do   func() (*registry.Event, error)
	}{
		{"promote production", func() (*registry.Event, error) {
			return r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2, ExpectRevision: before.Revision})
		}},
		{"same blend", func() (*registry.Event, error) {
			return r.SetBlend(ctx, registry.BlendRequest{Model: "calling-score", Weight: w})
		}},
		{"same canary", func() (*registry.Event, error) {
			return r.SetCanary(ctx, registry.CanaryRequest{Model: "calling-score", Version: 1, Traffic: 10, Mode: registry.ModeShadow})
		}},
	} {
		ev, err := tc.do()
		if err != nil || !ev.Unchanged || ev.Revision != before.Revision {
			t.Fatalf("%s: %+v %v, want unchanged at revision %d", tc.name, ev, err, before.Revision)
		}
	}
	// A different share is a change.
	if ev, err := r.SetCanary(ctx, registry.CanaryRequest{Model: "calling-score", Version: 1, Traffic: 20, Mode: registry.ModeShadow}); err != nil || ev.Unchanged {
		t.Fatalf("a new canary share: %+v %v", ev, err)
	}
	if _, err := r.SetCanary(ctx, registry.CanaryRequest{Model: "calling-score", Clear: true}); err != nil {
		t.Fatal(err)
	}
	m, _ := r.Model(ctx, "calling-score")
	ev, err := r.SetCanary(ctx, registry.CanaryRequest{Model: "calling-score", Clear: true})
	if err != nil || !ev.Unchanged || ev.Revision != m.Revision {
		t.Fatalf("clearing an absent canary: %+v %v", ev, err)
	}
	evs, _ := r.Events(ctx, registry.EventQuery{Model: "calling-score"})
	if len(evs) != len(evsBefore)+2 {
		t.Fatalf("history grew by %d events, want 2 (the new share and the clear)", len(evs)-len(evsBefore))
	}
	for _, e := range evs {
		if e.Unchanged {
			t.Fatalf("an unchanged answer is in the history: %+v", e)
		}
	}
	// A stale revision still conflicts, even for what holds.
	if _, err := r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2, ExpectRevision: before.Revision}); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("promote of production with a stale revision: %v, want ErrConflict", err)
	}
}

// randomBlob returns n random bytes and their sha256.
func randomBlob(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b, testutil.MustDigest(t, b)
}

// Many watch streams from different revisions share the reads after each
// commit; every one still gets every event after its revision, in order, with
// no gap and no repeat, while promotions commit.
func TestManyWatchersEachGetEveryEventInOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, _ := MustOpen(t)
	mustPush(t, r, "calling-score", testutil.MustModel(t, 1))
	mustPush(t, r, "calling-score", testutil.MustModel(t, 2))
	const watchers, promotions = 40, 30
	var wg sync.WaitGroup
	errs := make(chan error, watchers)
	for w := 0; w < watchers; w++ {
		since := uint64(w % 3) // some from the start, some after the pushes
		events := r.Watch(ctx, since)
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := since + 1
			for want <= 2+promotions {
				select {
				case e := <-events:
					if e.Revision != want {
						errs <- fmt.Errorf("watcher from %d: event %d, want %d", since, e.Revision, want)
						return
					}
					want++
				case <-ctx.Done():
					errs <- fmt.Errorf("watcher from %d: stuck before revision %d", since, want)
					return
				}
			}
		}()
	}
	for i := 0; i < promotions; i++ {
		if _, err := r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 1 + i%2}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
