package scoring

import (
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/testutil"
)

func TestStickyArmsAndShares(t *testing.T) {
	for _, share := range []float64{10, 50} {
		in := 0
		const keys = 100000
		for i := 0; i < keys; i++ {
			k := fmt.Sprintf("user-%d", i)
			a := pick(k, share)
			if pick(k, share) != a || pick(k, share) != a {
				t.Fatalf("key %s changed arms", k)
			}
			if a {
				in++
			}
		}
		got := 100 * float64(in) / keys
		if math.Abs(got-share) > 2 {
			t.Fatalf("share %g%%: %.2f%% of %d keys went to the canary", share, got, keys)
		}
	}
	if pick("anything", 0) || !pick("anything", 100) {
		t.Fatal("0% and 100% must be absolute")
	}
}

// TestPinnedVersionAnswersAfterASwap pins a request to v1, swaps v2 into the
// slot before the request is scored (as a promotion during the request would),
// and requires the answer from v1, which the request holds until it is
// answered; the slot's retired v1 is closed only after that.
func TestPinnedVersionAnswersAfterASwap(t *testing.T) {
	m := NewModel("calling-score", fallback.CallingScore{})
	load := func(version int) *loader.Loaded {
		tm := testutil.MustModel(t, uint64(version))
		sess, err := loader.Open(tm.Path, loader.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		return loader.NewLoaded(sess, version, tm.Digest, nil)
	}
	first := load(1)
	m.Production.Swap(first)
	t.Cleanup(m.Production.Close)
	s := New(nil, m)
	s.init()
	row := testutil.Row(0.6)
	want, err := first.Run(row, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, arm := m.Pin(1)
	if l == nil || arm != ArmProduction {
		t.Fatalf("version 1: %v, arm %q", l, arm)
	}
	m.Production.Swap(load(2))
	if v, _ := m.Pin(1); v != nil {
		t.Fatal("version 1 is still found after v2 took its slot")
	}
	req := Request{Version: 1, Flat: row, Rows: 1}
	out := s.score(m, &req, time.Second, l, arm)
	if out.Source != SourceModel || out.Version != 1 || out.Arm != ArmProduction || out.Scores[0] != want[0] {
		t.Fatalf("answer %+v; want v1's %v from production", out, want[0])
	}
	select {
	case <-first.Closed():
		t.Fatal("v1 was closed while a request held it")
	default:
	}
	l.Release()
	select {
	case <-first.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("v1 was never closed once the request let it go")
	}
}

func TestMain(m *testing.M) {
	testutil.InitORT()
	os.Exit(m.Run())
}
