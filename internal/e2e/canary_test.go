package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/scorerapi"

	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

func scoreKey(hc *http.Client, url, key string) scored {
	return scoreBody(hc, url, map[string]any{"features": testutil.Row(0.4), "key": key, "budget_ms": 10000})
}

func TestCanaryThroughTheControlPlane(t *testing.T) {
	ctx := context.Background()
	_, cl, sc, hc := servingV1(t)

	if _, err := cl.SetCanary(ctx, "calling-score", wire.CanaryBody{Version: 2, Traffic: 50, Mode: "ab"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the challenger to load", 10*time.Second, func() bool { return sc.Served.Routing().Mode == "ab" })
	arms := map[string]int{}
	for i := 0; i < 100; i++ {
		r := scoreKey(hc, sc.URL(), fmt.Sprintf("k%d", i))
		if r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		arms[fmt.Sprintf("%s/v%d", r.resp.Arm, r.resp.Version)]++
	}
	if arms["champion/v1"] == 0 || arms["challenger/v2"] == 0 || len(arms) != 2 {
		t.Fatalf("arms at 50%%: %v", arms)
	}

	if _, err := cl.ClearCanary(ctx, "calling-score", 0, "enough"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the canary to clear", 10*time.Second, func() bool {
		_, _, loaded := sc.Served.Canary.Current()
		return !loaded && sc.Served.Routing().Mode == ""
	})
	for i := 0; i < 50; i++ {
		if r := scoreKey(hc, sc.URL(), fmt.Sprintf("k%d", i)); r.resp.Arm != scorerapi.ArmProduction || r.resp.Version != 1 {
			t.Fatalf("after clearing: %+v", r.resp)
		}
	}
	if _, err := cl.SetBlend(ctx, "calling-score", wire.BlendBody{Weight: ptr(0.0)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the blend", 10*time.Second, func() bool { return sc.Served.Routing().Blend == 0 })
	r := score(hc, sc.URL(), testutil.Row(0.4))
	if want := sc.Served.Rules.Score(testutil.Row(0.4)); *r.resp.Score != want {
		t.Fatalf("blend 0 scored %v, the rules say %v", *r.resp.Score, want)
	}
}

func ptr[T any](v T) *T { return &v }
