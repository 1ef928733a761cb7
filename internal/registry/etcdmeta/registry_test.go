package etcdmeta_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/registry/fileblob"
	"github.com/modelops/modelops/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.InitORT()
	os.Exit(m.Run())
}

// mustReplica opens a registry on the etcd registry at metaURL over the
// artifacts in blobDir, as one control-plane replica does.
func mustReplica(t *testing.T, metaURL, blobDir string) *registry.Registry {
	t.Helper()
	meta, err := registry.OpenMetaStore(context.Background(), metaURL)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := fileblob.New(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	r := registry.New("", blobs, loader.Verifier{})
	r.Meta = meta
	r.StagingDir = filepath.Join(t.TempDir(), "staging")
	if err := r.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func mustPush(t *testing.T, r *registry.Registry, m testutil.Model) *registry.Version {
	t.Helper()
	data, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Push(context.Background(), registry.PushRequest{Model: "calling-score", Digest: m.Digest, Artifact: bytes.NewReader(data), Card: m.Card, Actor: "tester"})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return res.Version
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkHistory checks that the registry's revisions are one per event, in
// order, with no gap, and that the model's revision is its last event's.
func checkHistory(t *testing.T, r *registry.Registry) {
	t.Helper()
	ctx := context.Background()
	evs, err := r.Events(ctx, registry.EventQuery{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := r.Revision()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(evs)) != rev {
		t.Fatalf("%d events, registry at revision %d", len(evs), rev)
	}
	var last uint64
	for i, e := range evs {
		if e.Revision != uint64(i+1) {
			t.Fatalf("event %d has revision %d", i, e.Revision)
		}
		if e.Model == "calling-score" {
			last = e.Revision
		}
	}
	m, err := r.Model(ctx, "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	if m.Revision != last {
		t.Fatalf("model at revision %d, its last event is %d", m.Revision, last)
	}
}

// Two control planes on one etcd registry: what one records the other serves
// and its watchers hear; concurrent promotions with the same expected revision
// through both have exactly one winner.
func TestTwoReplicasShareOneRegistry(t *testing.T) {
	ctx := context.Background()
	cluster := testutil.MustEtcd(t, 3)
	blobDir := t.TempDir()
	a := mustReplica(t, cluster.URL("shared"), blobDir)
	b := mustReplica(t, cluster.URL("shared"), blobDir)
	for seed := uint64(1); seed <= 3; seed++ {
		mustPush(t, a, testutil.MustModel(t, seed))
	}
	if vs, err := b.Versions(ctx, "calling-score"); err != nil || len(vs) != 3 {
		t.Fatalf("the other replica sees %d versions (%v), want 3", len(vs), err)
	}

	// A watcher on b hears a promotion made through a.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rev, _ := b.Revision()
	heard := b.Watch(wctx, rev)
	if _, err := a.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 1, Actor: "tester"}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-heard:
		if e.Kind != registry.EventPromoted || e.To != 1 || e.Revision != rev+1 {
			t.Fatalf("the other replica's watcher heard %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other replica's watcher heard nothing of a promotion")
	}
	d, err := b.Deployment(ctx, "calling-score")
	if err != nil || d.Production == nil || d.Production.Version != 1 {
		t.Fatalf("the other replica deploys %+v (%v)", d, err)
	}

	for round := range 10 {
		m, err := a.Model(ctx, "calling-score")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, conflicts := 0, 0
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := a
				if i%2 == 1 {
					r = b
				}
				v := 1 + (round+i)%3
				if v == m.Production {
					v = 1 + v%3
				}
				_, err := r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: v, ExpectRevision: m.Revision, Actor: "tester"})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, registry.ErrConflict):
					conflicts++
				default:
					t.Errorf("promote: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || conflicts != 5 {
			t.Fatalf("round %d: %d promotions won, %d conflicted; want exactly one winner", round, wins, conflicts)
		}
	}
	checkHistory(t, a)
	checkHistory(t, b)
}

// With one member of three down the registry changes on; with two down changes
// fail as unavailable, saying why, while reads go on; when they return, changes
// work again.
func TestRegistryThroughTheLossOfEtcdMembers(t *testing.T) {
	ctx := context.Background()
	cluster := testutil.MustEtcd(t, 3)
	r := mustReplica(t, cluster.URL("quorum")+"?timeout=3s", t.TempDir())
	for seed := uint64(1); seed <= 2; seed++ {
		mustPush(t, r, testutil.MustModel(t, seed))
	}
	// promote swaps production between v1 and v2 (a change whose answer was
	// lost in a failover may have committed: the model says which is next).
	promote := func() error {
		m, err := r.Model(ctx, "calling-score")
		if err != nil {
			return err
		}
		_, err = r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 1 + m.Production%2, Actor: "tester"})
		return err
	}
	if err := promote(); err != nil {
		t.Fatal(err)
	}

	cluster.Kill(0)
	// A change in flight while a new leader is elected may fail; after that
	// every one goes through.
	waitFor(t, "a promotion with one member of three down", 20*time.Second, func() bool { return promote() == nil })
	for range 5 {
		if err := promote(); err != nil {
			t.Fatalf("promotion with one member of three down: %v", err)
		}
	}

	cluster.Kill(1)
	var err error
	waitFor(t, "changes to fail with two members of three down", 20*time.Second, func() bool {
		err = promote()
		return err != nil
	})
	if !errors.Is(err, registry.ErrUnavailable) || !strings.Contains(err.Error(), "etcd") {
		t.Fatalf("a promotion without quorum: %v, want ErrUnavailable naming etcd", err)
	}
	if err := promote(); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("a second promotion without quorum: %v", err)
	}
	m, err := r.Model(ctx, "calling-score")
	if err != nil {
		t.Fatalf("a read without quorum: %v", err)
	}
	if d, err := r.Deployment(ctx, "calling-score"); err != nil || d.Production == nil || d.Production.Version != m.Production {
		t.Fatalf("deployment without quorum: %+v %v (model %+v)", d, err, m)
	}
	if evs, err := r.Events(ctx, registry.EventQuery{Last: 3}); err != nil || len(evs) != 3 {
		t.Fatalf("events without quorum: %d %v", len(evs), err)
	}

	cluster.Start(0)
	cluster.Start(1)
	waitFor(t, "changes to work again once the members are back", 30*time.Second, func() bool { return promote() == nil })
	checkHistory(t, r)
}
