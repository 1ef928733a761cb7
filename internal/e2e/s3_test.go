package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/scorerapi"

	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

func scorerStatus(t *testing.T, url string) wire.ModelStatus {
	t.Helper()
	resp, err := http.Get(url + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Models []wire.ModelStatus `json:"models"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Models) != 1 {
		t.Fatalf("status: %v %+v", err, out)
	}
	return out.Models[0]
}

// TestS3StoreEndToEnd runs the control plane on a real S3 server, then deletes a
// blob behind the registry's back: the scorer refuses it and keeps serving.
func TestS3StoreEndToEnd(t *testing.T) {
	ctx := context.Background()
	gw := testutil.MustS3(t, "models")
	_, cl, sc, hc := servingV1(t, gw.StoreURL("models", "team-a", ""))

	v2, err := cl.Version(ctx, "calling-score", 2)
	if err != nil {
		t.Fatal(err)
	}
	// The gateway's posix backend keeps object KEY of BUCKET at DIR/BUCKET/KEY.
	obj := filepath.Join(gw.Dir(), "models", "team-a", "blobs", "sha256", v2.Digest)
	if _, err := os.Stat(obj); err != nil {
		t.Fatalf("blob not under the documented key: %v", err)
	}
	if err := os.Remove(obj); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed load", 10*time.Second, func() bool { return sc.Follower.Status().FailedLoads > 0 })
	if r := score(hc, sc.URL(), testutil.Row(0.2)); r.resp.Version != 1 || r.resp.Source != scorerapi.SourceModel {
		t.Fatalf("after a missing blob: %+v, want v1 still serving", r)
	}
	st := scorerStatus(t, sc.URL())
	sync, _ := json.Marshal(st.Sync)
	if st.Version != 1 || !strings.Contains(string(sync), "not found") {
		t.Fatalf("status %+v (sync %s): want v1 and the load error", st, sync)
	}
}

// TestScorerRestartsFromCacheWithoutControlPlane kills the control plane, restarts
// the scorer on the same cache, and scores with the model at once.
func TestScorerRestartsFromCacheWithoutControlPlane(t *testing.T) {
	ctx := context.Background()
	cp := MustControlPlane(t)
	cl := adminClient(cp.URL())
	m := testutil.MustModel(t, 4)
	mustPush(t, cl, m)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache")
	sc := MustScorer(t, cp.URL(), cache)
	hc := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "v1", 10*time.Second, func() bool { return score(hc, sc.URL(), testutil.Row(0.6)).resp.Version == 1 })

	cpURL := cp.URL()
	if err := cp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	again := MustScorer(t, cpURL, cache)
	r := score(hc, again.URL(), testutil.Row(0.6))
	if r.status != 200 || r.resp.Source != scorerapi.SourceModel || r.resp.Version != 1 {
		t.Fatalf("first request after a restart without control plane: %+v, want the cached v1", r)
	}
	if want := m.MLP.Forward(testutil.Row(0.6))[0]; *r.resp.Score != want && abs32(*r.resp.Score-want) > 1e-5 {
		t.Fatalf("cached model scored %v, want %v", *r.resp.Score, want)
	}
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

// TestScorerKilledMidDownloadServesOnlyVerifiedArtifacts leaves the cache as a
// scorer killed while writing an artifact would (a partial temp file, and a final
// file cut short by a crash of the disk beneath it), restarts the scorer without
// a control plane, and checks it serves the rules, not the broken bytes; then,
// with the control plane back, it fetches, verifies and serves the model.
func TestScorerKilledMidDownloadServesOnlyVerifiedArtifacts(t *testing.T) {
	ctx := context.Background()
	cp := MustControlPlane(t)
	cl := adminClient(cp.URL())
	mustPush(t, cl, testutil.MustModel(t, 6))
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache")
	sc := MustScorer(t, cp.URL(), cache)
	hc := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "v1", 10*time.Second, func() bool { return score(hc, sc.URL(), testutil.Row(0.3)).resp.Version == 1 })
	digest := func() string { _, d, _ := sc.Slot.Current(); return d }()
	sc.Close(ctx)

	final := filepath.Join(cache, "sha256", digest+".onnx")
	data, err := os.ReadFile(final)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(cache, "tmp", digest[:16]+"-partial"), data[:len(data)/3], 0o644)
	os.WriteFile(final, data[:len(data)/2], 0o644)

	again := MustScorer(t, "http://127.0.0.1:1", cache) // no control plane
	if r := score(hc, again.URL(), testutil.Row(0.3)); r.resp.Source != scorerapi.SourceFallback {
		t.Fatalf("with a damaged cache and no control plane: %+v, want the rules", r.resp)
	}
	if _, err := os.Stat(final); !os.IsNotExist(err) {
		t.Fatal("the damaged artifact was left in the cache")
	}
	again.Close(ctx)

	healed := MustScorer(t, cp.URL(), cache)
	waitFor(t, "the verified download", 10*time.Second, func() bool {
		r := score(hc, healed.URL(), testutil.Row(0.3))
		return r.resp.Source == scorerapi.SourceModel && r.resp.Version == 1
	})
}
