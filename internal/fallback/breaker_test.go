package fallback

import (
	"testing"
	"time"
)

func TestBreakerOpensProbesAndCloses(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBreaker(3, 5*time.Second)
	b.Now = func() time.Time { return now }
	for i := 0; i < 2; i++ {
		if !b.Allow() {
			t.Fatal("refused before the threshold")
		}
		b.Record(false)
	}
	if b.State() != BreakerClosed {
		t.Fatalf("after 2 failures: %s", b.State())
	}
	b.Allow()
	b.Record(false)
	if b.State() != BreakerOpen || b.Allow() {
		t.Fatalf("after 3 failures: %s, allow %v; want open and refusing", b.State(), b.Allow())
	}
	now = now.Add(6 * time.Second)
	if !b.Allow() {
		t.Fatal("no probe after the cool-down")
	}
	if b.Allow() {
		t.Fatal("a second request went through while the probe was out")
	}
	b.Record(false) // the probe failed: open again
	if b.State() != BreakerOpen || b.Opened() != 2 {
		t.Fatalf("after a failed probe: %s, opened %d", b.State(), b.Opened())
	}
	now = now.Add(6 * time.Second)
	if !b.Allow() {
		t.Fatal("no second probe")
	}
	b.Record(true)
	if b.State() != BreakerClosed || !b.Allow() {
		t.Fatalf("after a good probe: %s", b.State())
	}
}
