// Package registrytest holds the conformance suites every registry storage
// driver runs from its tests: RunMetaStore for metadata stores, RunBlobStore for
// blob stores. A new driver passes the same suites.
package registrytest

import (
	"context"
	"errors"
	"math"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/registry"
)

// RunMetaStore runs the contract every MetaStore keeps on fresh stores made by
// open (each test its own: open gets the subtest's t, for TempDir and Cleanup).
func RunMetaStore(t *testing.T, open func(t *testing.T) registry.MetaStore) {
	t.Run("Contract", func(t *testing.T) { metaContract(t, open(t)) })
	t.Run("LatestEvents", func(t *testing.T) { latestEvents(t, open(t)) })
	t.Run("Context", func(t *testing.T) { metaContext(t, open(t)) })
	t.Run("Retries", func(t *testing.T) { metaRetries(t, open) })
	t.Run("RolloutKept", func(t *testing.T) { rolloutKept(t, open) })
}

// rolloutKept: a model's rollout and rollout policy are stored with it and read
// back whole (the monitor keeps no rollout state of its own, so a restarted
// control plane carries on from what the store holds).
func rolloutKept(t *testing.T, open func(t *testing.T) registry.MetaStore) {
	ctx := context.Background()
	s := open(t)
	at := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	rp := registry.DefaultRolloutPolicy()
	rp.LossMargin = 0.3
	want := registry.Model{Name: "m", Latest: 2, Production: 1,
		Candidate:     &registry.Canary{Version: 2, Traffic: 25, Mode: registry.ModeAB, Since: at},
		Rollout:       &registry.Rollout{Version: 2, Mode: registry.ModeAB, Steps: []float64{5, 25, 100}, Step: 1, Shadow: registry.Duration(time.Minute), Interval: registry.Duration(time.Minute), Timeout: registry.Duration(time.Hour), State: registry.RolloutPaused, StartedAt: at, StepSince: at.Add(time.Minute), Analysis: "pass: …"},
		RolloutPolicy: &rp}
	if err := s.Update(ctx, func(tx registry.MetaTx) error { return tx.PutModel(&want) }); err != nil {
		t.Fatal(err)
	}
	err := s.View(ctx, func(tx registry.MetaTx) error {
		got, err := tx.Model("m")
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got.Rollout, want.Rollout) || !reflect.DeepEqual(got.RolloutPolicy, want.RolloutPolicy) {
			t.Errorf("read back rollout %+v policy %+v; want %+v %+v", got.Rollout, got.RolloutPolicy, want.Rollout, want.RolloutPolicy)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func metaContract(t *testing.T, s registry.MetaStore) {
	ctx := context.Background()
	// Absent things are ErrNotFound.
	err := s.View(ctx, func(tx registry.MetaTx) error {
		if tx.Revision() != 0 {
			t.Errorf("a new store is at revision %d", tx.Revision())
		}
		if _, err := tx.Model("m"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("absent model: %v", err)
		}
		if _, err := tx.Version("m", 1); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("absent version: %v", err)
		}
		if _, err := tx.Token("abc"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("absent token: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// An update commits, numbers events, and wakes watchers.
	changed := s.Changed()
	err = s.Update(ctx, func(tx registry.MetaTx) error {
		for _, m := range []string{"b", "a"} {
			if err := tx.PutModel(&registry.Model{Name: m, Latest: 2}); err != nil {
				return err
			}
			for n := 2; n >= 1; n-- { // stored out of order, read in order
				if err := tx.PutVersion(&registry.Version{Model: m, Number: n, Digest: m + string(rune('0'+n))}); err != nil {
					return err
				}
			}
			e := &registry.Event{Model: m, Kind: registry.EventPushed}
			if err := tx.AppendEvent(e); err != nil {
				return err
			}
			if e.Revision != tx.Revision() {
				t.Errorf("event stamped %d, store at %d", e.Revision, tx.Revision())
			}
		}
		return tx.PutToken(&registry.Token{ID: "abc", Name: "t", Role: registry.RoleViewer})
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed was not closed by a committed update")
	}

	// A failed update changes nothing and wakes nobody.
	changed = s.Changed()
	boom := errors.New("boom")
	if err := s.Update(ctx, func(tx registry.MetaTx) error {
		tx.PutModel(&registry.Model{Name: "c"})
		tx.AppendEvent(&registry.Event{Model: "c"})
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("failed update returned %v", err)
	}
	select {
	case <-changed:
		t.Fatal("a rolled-back update woke the watchers")
	default:
	}

	// An update that only reads (a request for what already holds, answered
	// "unchanged") succeeds and moves nothing.
	if err := s.Update(ctx, func(tx registry.MetaTx) error {
		if _, err := tx.Model("a"); err != nil {
			return err
		}
		if tx.Revision() != 2 {
			t.Errorf("a read-only update sees revision %d, want 2", tx.Revision())
		}
		return nil
	}); err != nil {
		t.Fatalf("a read-only update: %v", err)
	}

	err = s.View(ctx, func(tx registry.MetaTx) error {
		if tx.Revision() != 2 {
			t.Errorf("revision %d, want 2", tx.Revision())
		}
		models, err := tx.Models()
		if err != nil || len(models) != 2 || models[0].Name != "a" || models[1].Name != "b" {
			t.Errorf("models %+v (%v), want a and b by name", models, err)
		}
		if _, err := tx.Model("c"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("the rolled-back model is there: %v", err)
		}
		vs, err := tx.Versions("a")
		if err != nil || len(vs) != 2 || vs[0].Number != 1 || vs[1].Digest != "a2" {
			t.Errorf("versions of a: %+v (%v), want 1 and 2 in order", vs, err)
		}
		if v, err := tx.Version("b", 2); err != nil || v.Digest != "b2" {
			t.Errorf("b v2: %+v %v", v, err)
		}
		all, err := tx.Events(0, 10, func(*registry.Event) bool { return true })
		if err != nil || len(all) != 2 || all[0].Revision != 1 || all[1].Model != "a" {
			t.Errorf("events %+v (%v)", all, err)
		}
		after, _ := tx.Events(1, 10, func(*registry.Event) bool { return true })
		onlyB, _ := tx.Events(0, 10, func(e *registry.Event) bool { return e.Model == "b" })
		limited, _ := tx.Events(0, 1, func(*registry.Event) bool { return true })
		if len(after) != 1 || after[0].Revision != 2 || len(onlyB) != 1 || onlyB[0].Model != "b" || len(limited) != 1 {
			t.Errorf("since 1: %+v; only b: %+v; limit 1: %+v", after, onlyB, limited)
		}
		tokens, err := tx.Tokens()
		if err != nil || len(tokens) != 1 || tokens[0].Role != registry.RoleViewer {
			t.Errorf("tokens %+v (%v)", tokens, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// latestEvents: LatestEvents reads from the newest end: the last n events that
// match, after since, in revision order.
func latestEvents(t *testing.T, s registry.MetaStore) {
	ctx := context.Background()
	{
		{
			if err := s.Update(ctx, func(tx registry.MetaTx) error {
				for i := range 10 {
					m := "a" // revisions 1, 3, 5, 7, 9
					if i%2 == 1 {
						m = "b"
					}
					if err := tx.AppendEvent(&registry.Event{Model: m, Kind: registry.EventPushed}); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			onlyA := func(e *registry.Event) bool { return e.Model == "a" }
			all := func(*registry.Event) bool { return true }
			revs := func(evs []registry.Event, err error) []uint64 {
				if err != nil {
					t.Fatal(err)
				}
				out := []uint64{}
				for _, e := range evs {
					out = append(out, e.Revision)
				}
				return out
			}
			for _, tc := range []struct {
				since uint64
				n     int
				keep  func(*registry.Event) bool
				want  []uint64
			}{
				{0, 3, onlyA, []uint64{5, 7, 9}},
				{6, 10, onlyA, []uint64{7, 9}},
				{0, 2, all, []uint64{9, 10}},
				{0, 100, all, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
				{10, 5, all, []uint64{}},
			} {
				var got []uint64
				s.View(ctx, func(tx registry.MetaTx) error {
					got = revs(tx.LatestEvents(tc.since, tc.n, tc.keep))
					return nil
				})
				if !slices.Equal(got, tc.want) {
					t.Errorf("LatestEvents(since %d, n %d): %v, want %v", tc.since, tc.n, got, tc.want)
				}
			}
			// Nothing comes after the largest revision; since+1 wrapped to
			// every event.
			var got []uint64
			s.View(ctx, func(tx registry.MetaTx) error {
				got = revs(tx.Events(math.MaxUint64, 100, all))
				return nil
			})
			if len(got) != 0 {
				t.Errorf("Events(since 2^64-1): %v, want none", got)
			}
		}
	}
}

// metaContext: a done context stops a transaction before it starts, and an
// update so stopped changes nothing.
func metaContext(t *testing.T, s registry.MetaStore) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := s.Update(ctx, func(tx registry.MetaTx) error {
		ran = true
		return tx.PutModel(&registry.Model{Name: "m"})
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a cancelled context: %v, want context.Canceled", err)
	}
	if err := s.View(ctx, func(registry.MetaTx) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("View with a cancelled context: %v, want context.Canceled", err)
	}
	if ran {
		t.Error("an update ran with a cancelled context")
	}
	err = s.View(context.Background(), func(tx registry.MetaTx) error {
		if _, err := tx.Model("m"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("the cancelled update stored a model: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// metaRetries: concurrent read-modify-write updates are serialised: none is
// lost, every event gets its own revision, and the history pages in order.
func metaRetries(t *testing.T, open func(t *testing.T) registry.MetaStore) {
	ctx := context.Background()
	s := open(t)
	if err := s.Update(ctx, func(tx registry.MetaTx) error { return tx.PutModel(&registry.Model{Name: "m"}) }); err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 80
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				err := s.Update(ctx, func(tx registry.MetaTx) error {
					m, err := tx.Model("m")
					if err != nil {
						return err
					}
					m.Latest++
					model := "a"
					if w%2 == 1 {
						model = "b"
					}
					e := &registry.Event{Model: model, Kind: registry.EventPushed, To: m.Latest}
					if err := tx.AppendEvent(e); err != nil {
						return err
					}
					m.Revision = e.Revision
					return tx.PutModel(m)
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = writers * each
	err := s.View(ctx, func(tx registry.MetaTx) error {
		m, err := tx.Model("m")
		if err != nil {
			return err
		}
		if m.Latest != total || m.Revision != total || tx.Revision() != total {
			t.Errorf("after %d updates: latest %d, model revision %d, store revision %d", total, m.Latest, m.Revision, tx.Revision())
		}
		all, err := tx.Events(0, 1000, func(*registry.Event) bool { return true })
		if err != nil {
			return err
		}
		if len(all) != total {
			t.Fatalf("%d events, want %d", len(all), total)
		}
		for i, e := range all {
			if e.Revision != uint64(i+1) || e.To != i+1 {
				t.Fatalf("event %d: revision %d, to %d: the history is not one update after another", i, e.Revision, e.To)
			}
		}
		onlyB := func(e *registry.Event) bool { return e.Model == "b" }
		bs, err := tx.Events(0, 1000, onlyB)
		if err != nil || len(bs) != total/2 {
			t.Errorf("events of b: %d (%v), want %d", len(bs), err, total/2)
		}
		last, err := tx.LatestEvents(0, total/2-1, onlyB)
		if err != nil || len(last) != total/2-1 || last[len(last)-1].Revision != bs[len(bs)-1].Revision || last[0].Revision != bs[1].Revision {
			t.Errorf("the last %d events of b: %d (%v)", total/2-1, len(last), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
