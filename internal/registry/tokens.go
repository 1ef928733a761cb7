package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Roles a token may have.
const (
	RoleAdmin  = "admin"  // everything: push, promote, canary, rollback, policy, tokens
	RoleViewer = "viewer" // read
	RoleScorer = "scorer" // read, watch, artifacts, reports
)

// Errors of authentication.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrForbidden       = errors.New("forbidden")
)

// Token is a bearer credential. Only the sha256 of its secret is stored.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	Revoked   bool      `json:"revoked,omitempty"`
	Hash      string    `json:"hash,omitempty"`
	// Node is the scorer node a scorer token reports for: named when the token
	// was made, or bound by its first accepted report. Its reports for any
	// other node are refused, so one node's token cannot speak for another.
	Node string `json:"node,omitempty"`
}

var tokenRE = regexp.MustCompile(`^mo_([0-9a-f]{12})_([0-9a-f]{40})$`)

// ValidRole reports whether r is a role.
func ValidRole(r string) bool { return r == RoleAdmin || r == RoleViewer || r == RoleScorer }

func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewTokenSecret returns a fresh token in the form mo_<id>_<secret>.
func NewTokenSecret() string { return "mo_" + randomHex(6) + "_" + randomHex(20) }

// CreateToken makes a token with a role and returns its secret, shown only now.
func (r *Registry) CreateToken(ctx context.Context, name, role string) (*Token, string, error) {
	return r.CreateNodeToken(ctx, name, role, "")
}

// CreateNodeToken makes a token as CreateToken does; a scorer token may name
// the node it reports for (node, else it is bound by its first report).
func (r *Registry) CreateNodeToken(_ context.Context, name, role, node string) (*Token, string, error) {
	if node != "" {
		if role != RoleScorer {
			return nil, "", Invalidf("only a scorer token names a node (this one has role %s)", role)
		}
		if err := CheckNodeName(node); err != nil {
			return nil, "", err
		}
	}
	secret := NewTokenSecret()
	t, err := r.addToken(name, role, node, secret)
	return t, secret, err
}

// MaxNodeName bounds a scorer node's name, in bytes.
const MaxNodeName = 200

// CheckNodeName returns an error unless name can name a scorer node: 1 to
// MaxNodeName bytes of UTF-8 without control characters (it is printed on
// operators' terminals).
func CheckNodeName(name string) error {
	if name == "" || len(name) > MaxNodeName {
		return Invalidf("a node name is 1 to %d bytes (this one is %d)", MaxNodeName, len(name))
	}
	if !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return Invalidf("node name %q holds control characters or invalid UTF-8", name)
	}
	return nil
}

// nodeFree refuses a node another live token is bound to: two tokens for one
// node would let either speak for the other's.
func nodeFree(tx MetaTx, node, id string) error {
	all, err := tx.Tokens()
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.Node == node && o.ID != id && !o.Revoked {
			return fmt.Errorf("%w: node %q is bound to token %s (%s)", ErrForbidden, node, o.ID, o.Name)
		}
	}
	return nil
}

// BindTokenNode binds a scorer token that names no node yet to node, and
// returns the node the token is bound to: node, or the one it was bound to
// before (the caller compares). The binding is stored in the token's record.
func (r *Registry) BindTokenNode(ctx context.Context, id, node string) (string, error) {
	if err := CheckNodeName(node); err != nil {
		return "", err
	}
	bound := ""
	err := r.Meta.Update(ctx, func(tx MetaTx) error {
		t, err := tx.Token(id)
		if err != nil {
			return err
		}
		if t.Role != RoleScorer {
			return fmt.Errorf("%w: token %s has role %s; only a scorer token is bound to a node", ErrForbidden, t.Name, t.Role)
		}
		if t.Node != "" {
			bound = t.Node
			return nil
		}
		if err := nodeFree(tx, node, t.ID); err != nil {
			return err
		}
		t.Node, bound = node, node
		return tx.PutToken(t)
	})
	return bound, err
}

// maxTokenName bounds a token's name: it is the actor of every event the
// token causes, and shown in lists and terminals.
const maxTokenName = 64

// AddToken stores a token whose secret the caller chose (a bootstrap token from
// the environment). The secret must have the token form.
func (r *Registry) AddToken(name, role, secret string) (*Token, error) {
	return r.addToken(name, role, "", secret)
}

func (r *Registry) addToken(name, role, node, secret string) (*Token, error) {
	if !ValidRole(role) {
		return nil, Invalidf("role %q: want admin, viewer or scorer", role)
	}
	if name == "" || len(name) > maxTokenName || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return nil, Invalidf("token \"name\" must be 1 to %d bytes, without control characters (got %d bytes)", maxTokenName, len(name))
	}
	m := tokenRE.FindStringSubmatch(secret)
	if m == nil {
		return nil, Invalidf("a token has the form mo_<12 hex>_<40 hex> (`modelctl token new` makes one)")
	}
	t := &Token{ID: m[1], Name: name, Role: role, Node: node, CreatedAt: r.Now().UTC(), Hash: hashSecret(secret)}
	ctx := context.Background() // a start-up step or an API call that already authenticated
	err := r.Meta.Update(ctx, func(tx MetaTx) error {
		if node != "" {
			if err := nodeFree(tx, node, t.ID); err != nil {
				return fmt.Errorf("%w: %w", ErrConflict, err)
			}
		}
		old, err := tx.Token(t.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			return tx.PutToken(t)
		case err != nil:
			return err
		case old.Hash == t.Hash && old.Role == t.Role && !old.Revoked:
			*t = *old
			return nil // the same bootstrap token again
		case old.Hash == t.Hash && old.Revoked:
			return fmt.Errorf("%w: token %s was revoked; make a new one with `modelctl token new` and start with that", ErrConflict, t.ID)
		}
		return fmt.Errorf("token %s exists already: %w", t.ID, ErrConflict)
	})
	return t, err
}

// Authenticate returns the live token a secret belongs to.
func (r *Registry) Authenticate(secret string) (*Token, error) {
	m := tokenRE.FindStringSubmatch(secret)
	if m == nil {
		return nil, ErrUnauthenticated
	}
	t, err := r.token(m[1])
	if err != nil {
		return nil, ErrUnauthenticated
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(t.Hash)) != 1 || t.Revoked {
		return nil, ErrUnauthenticated
	}
	t.Hash = ""
	return t, nil
}

// token reads a token by id.
func (r *Registry) token(id string) (*Token, error) {
	var t *Token
	ctx := context.Background() // authentication: bounded by the store's own timeouts
	err := r.Meta.View(ctx, func(tx MetaTx) (err error) {
		t, err = tx.Token(id)
		return err
	})
	return t, err
}

// Tokens lists every token, without hashes.
func (r *Registry) Tokens(ctx context.Context) ([]Token, error) {
	var out []Token
	err := r.Meta.View(ctx, func(tx MetaTx) (err error) {
		out, err = tx.Tokens()
		return err
	})
	for i := range out {
		out[i].Hash = ""
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// RevokeToken revokes a token by id; it authenticates no more. The last live
// admin token stays: revoking it would leave no one able to make another.
func (r *Registry) RevokeToken(ctx context.Context, id string) error {
	return r.Meta.Update(ctx, func(tx MetaTx) error {
		t, err := tx.Token(id)
		if err != nil {
			return err
		}
		if t.Role == RoleAdmin && !t.Revoked {
			all, err := tx.Tokens()
			if err != nil {
				return err
			}
			admins := 0
			for _, o := range all {
				if o.Role == RoleAdmin && !o.Revoked {
					admins++
				}
			}
			if admins == 1 {
				return fmt.Errorf("%w: token %s is the last admin token; create another admin token first (`modelctl token create --role admin`)", ErrConflict, id)
			}
		}
		t.Revoked = true
		return tx.PutToken(t)
	})
}

// HasTokens reports whether any live token exists.
func (r *Registry) HasTokens() bool {
	ts, _ := r.Tokens(context.Background())
	for _, t := range ts {
		if !t.Revoked {
			return true
		}
	}
	return false
}

// TokenByID returns a live token by id (no secret needed: for sessions that
// were opened with the secret).
func (r *Registry) TokenByID(id string) (*Token, error) {
	t, err := r.token(id)
	if err != nil || t.Revoked {
		return nil, ErrUnauthenticated
	}
	t.Hash = ""
	return t, nil
}
