package registry_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
)

func TestConcurrentPromotesWithExpectRevisionHaveOneWinner(t *testing.T) {
	ctx := context.Background()
	r, _ := MustOpen(t)
	for seed := uint64(1); seed <= 3; seed++ {
		mustPush(t, r, "calling-score", testutil.MustModel(t, seed))
	}
	for round := 0; round < 20; round++ {
		m, err := r.Model(ctx, "calling-score")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, conflicts := 0, 0
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				v := 1 + (round+i)%3
				if v == m.Production {
					v = 1 + (v % 3)
				}
				_, err := r.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: v, ExpectRevision: m.Revision})
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
			}(i)
		}
		wg.Wait()
		if wins != 1 || conflicts != 7 {
			t.Fatalf("round %d: %d won, %d conflicted; want exactly one winner", round, wins, conflicts)
		}
	}
}
