package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
)

// A scorer token is bound to the node of its first report, in its stored
// record: a second name is not taken, and the binding survives a reopen.
func TestScorerTokenIsBoundToOneNode(t *testing.T) {
	ctx := context.Background()
	reg, _ := testutil.MustRegistry(t)
	tok, secret, err := reg.CreateToken(ctx, "node-a", registry.RoleScorer)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := reg.BindTokenNode(ctx, tok.ID, "a"); err != nil || got != "a" {
		t.Fatalf("first binding: %q %v", got, err)
	}
	if got, err := reg.BindTokenNode(ctx, tok.ID, "b"); err != nil || got != "a" {
		t.Fatalf("a second node: bound to %q (%v), want still a", got, err)
	}
	if a, err := reg.Authenticate(secret); err != nil || a.Node != "a" {
		t.Fatalf("the token authenticates as %+v (%v), want bound to a", a, err)
	}
	named, _, err := reg.CreateNodeToken(ctx, "node-c", registry.RoleScorer, "c")
	if err != nil || named.Node != "c" {
		t.Fatalf("a token naming its node: %+v %v", named, err)
	}
	if got, _ := reg.BindTokenNode(ctx, named.ID, "d"); got != "c" {
		t.Fatalf("a token made for c bound to %q", got)
	}
	other, _, _ := reg.CreateToken(ctx, "node-x", registry.RoleScorer)
	if _, err := reg.BindTokenNode(ctx, other.ID, "a"); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("a second token binding node a: %v, want forbidden", err)
	}
	if _, _, err := reg.CreateNodeToken(ctx, "node-a2", registry.RoleScorer, "a"); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("a token made for node a, bound already: %v, want a conflict", err)
	}
	admin, _, _ := reg.CreateToken(ctx, "root", registry.RoleAdmin)
	if _, err := reg.BindTokenNode(ctx, admin.ID, "a"); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("binding an admin token: %v, want forbidden", err)
	}
	for _, bad := range []struct{ role, node string }{{registry.RoleViewer, "v"}, {registry.RoleScorer, "\x1b]0;owned\x07"}, {registry.RoleScorer, strings.Repeat("n", 201)}} {
		if _, _, err := reg.CreateNodeToken(ctx, "x", bad.role, bad.node); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("token for node %q with role %s: %v, want invalid", bad.node, bad.role, err)
		}
	}
}

// A policy stored before corroborating_nodes existed reads with the default;
// an out-of-range one is refused.
func TestCorroboratingNodesDefaultsAndRange(t *testing.T) {
	old := registry.DefaultPolicy()
	old.CorroboratingNodes = 0
	m := registry.Model{Policy: &old}
	if got := m.EffectivePolicy().CorroboratingNodes; got != registry.DefaultCorroboratingNodes {
		t.Fatalf("an old policy reads corroborating_nodes %d", got)
	}
	if err := old.Check(); err == nil || !strings.Contains(err.Error(), "corroborating_nodes") {
		t.Fatalf("corroborating_nodes 0: %v", err)
	}
}
