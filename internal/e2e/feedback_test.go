package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/scorerapi"

	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

func TestOutcomesCompareChampionAndChallenger(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	mustPush(t, cl, testutil.MustModel(t, 1))
	mustPush(t, cl, testutil.MustModel(t, 2))
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetCanary(ctx, "calling-score", wire.CanaryBody{Version: 2, Traffic: 50, Mode: "ab"}); err != nil {
		t.Fatal(err)
	}
	sc := fastScorer(t, cp.URL())
	waitFor(t, "both arms", 10*time.Second, func() bool {
		_, _, c := sc.Served.Canary.Current()
		_, _, p := sc.Served.Production.Current()
		return c && p && sc.Served.Routing().Mode == "ab"
	})
	hc := &http.Client{Timeout: 5 * time.Second}
	post := func(body string) int {
		resp, err := hc.Post(sc.URL()+"/v1/feedback", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var firstID string
	for i := 0; i < 60; i++ {
		r := scoreKey(hc, sc.URL(), fmt.Sprintf("u%d", i))
		if r.resp.RequestID == "" {
			t.Fatalf("a model answer without request_id: %+v", r.resp)
		}
		if firstID == "" {
			firstID = r.resp.RequestID
		}
		// The champion's outcomes match its scores; the challenger's are off by
		// 0.5, within [0,1].
		outcome := float64(*r.resp.Score)
		if r.resp.Arm == scorerapi.ArmCanary {
			if outcome >= 0.5 {
				outcome -= 0.5
			} else {
				outcome += 0.5
			}
		}
		if code := post(fmt.Sprintf(`{"request_id":%q,"outcome":%g}`, r.resp.RequestID, outcome)); code != 204 {
			t.Fatalf("feedback: %d", code)
		}
	}
	for body, want := range map[string]int{
		fmt.Sprintf(`{"request_id":%q,"outcome":1}`, firstID): 404, // a second feedback
		`{"request_id":"nope","outcome":1}`:                   404,
		`{"request_id":"x"}`:                                  400,
		`{"request_id":"x","outcome":"high"}`:                 400,
		`{"request_id":"x","outcome":7}`:                      400, // scores are in [0,1]
		`{"request_id":"x","outcomes":[0.5,-0.1]}`:            400,
		`{"outcome":1}`:                                       400,
	} {
		if code := post(body); code != want {
			t.Errorf("feedback %s: %d, want %d", body, code, want)
		}
	}
	waitFor(t, "outcomes per arm in health", 10*time.Second, func() bool {
		h, err := cl.Health(ctx, "calling-score")
		if err != nil {
			return false
		}
		var champ, chall *float64
		for i, a := range h.Arms {
			if a.Outcomes == 0 {
				continue
			}
			if a.Arm == scorerapi.ArmProduction {
				champ = &h.Arms[i].OutcomeMSE
			} else {
				chall = &h.Arms[i].OutcomeMSE
			}
		}
		return champ != nil && chall != nil && *champ < 1e-9 && *chall > 0.24 && *chall < 0.26
	})
}
