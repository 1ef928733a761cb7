package api

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// 30,000 logins with one token keep that token's sessions at its cap (the
// oldest go), and logins with 30,000 tokens keep all sessions at the overall
// cap: the three indexes agree and none grows past it.
var ctx = context.Background()

func TestSessionsAreCapped(t *testing.T) {
	var s sessions
	first, _, _ := s.create(ctx, "viewer")
	var last string
	for range 30000 {
		last, _, _ = s.create(ctx, "viewer")
	}
	if byID, inList, byToken := s.counts(); byID != maxSessionsPerToken || inList != byID || byToken != byID {
		t.Fatalf("after 30,000 logins of one token: %d sessions (list %d, by token %d), want %d", byID, inList, byToken, maxSessionsPerToken)
	}
	if _, ok := s.get(ctx, first); ok {
		t.Error("the first session outlived 30,000 newer ones of its token")
	}
	if _, ok := s.get(ctx, last); !ok {
		t.Error("the newest session is gone")
	}

	var all sessions
	for i := range 30000 {
		all.create(ctx, fmt.Sprintf("token-%d", i))
	}
	// A token whose one session is the oldest of all, pushed out by its own
	// next one, has the new one in its list.
	all.create(ctx, "lone")
	for i := range maxSessions - 1 {
		all.create(ctx, fmt.Sprintf("again-%d", i))
	}
	mine, _, _ := all.create(ctx, "lone")
	if _, ok := all.get(ctx, mine); !ok || all.byToken["lone"] == nil || all.byToken["lone"].Len() != 1 {
		t.Error("a token whose only session was the oldest of all lost track of its new one")
	}
	if byID, inList, byToken := all.counts(); byID != maxSessions || inList != byID || byToken != byID {
		t.Fatalf("after a token's only session was pushed out by its next: %d sessions (list %d, by token %d)", byID, inList, byToken)
	}
	if byID, inList, byToken := all.counts(); byID != maxSessions || inList != byID || byToken != byID || len(all.byToken) != maxSessions {
		t.Fatalf("after 30,000 logins of as many tokens: %d sessions (list %d, by token %d, tokens %d), want %d", byID, inList, byToken, len(all.byToken), maxSessions)
	}
}

// Expired sessions are swept by the next login, and a token with none left
// leaves no trace.
func TestExpiredSessionsAreSweptAtLogin(t *testing.T) {
	now := time.Unix(1e9, 0)
	s := sessions{now: func() time.Time { return now }}
	var old []string
	for i := range 50 {
		id, _, _ := s.create(ctx, fmt.Sprintf("t%d", i%5))
		old = append(old, id)
	}
	now = now.Add(sessionTTL / 2)
	kept, _, _ := s.create(ctx, "t0")
	now = now.Add(sessionTTL/2 + time.Second) // the first 50 have expired, not kept
	s.create(ctx, "t9")
	if byID, inList, byToken := s.counts(); byID != 2 || inList != 2 || byToken != 2 || len(s.byToken) != 2 {
		t.Fatalf("after the expiry of 50: %d sessions (list %d, by token %d, tokens %d), want 2", byID, inList, byToken, len(s.byToken))
	}
	if _, ok := s.get(ctx, old[0]); ok {
		t.Error("an expired session still signs in")
	}
	if _, ok := s.get(ctx, kept); !ok {
		t.Error("a live session was swept")
	}
}
