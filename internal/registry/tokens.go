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
func (r *Registry) CreateToken(_ context.Context, name, role string) (*Token, string, error) {
	secret := NewTokenSecret()
	t, err := r.AddToken(name, role, secret)
	return t, secret, err
}

// maxTokenName bounds a token's name: it is the actor of every event the
// token causes, and shown in lists and terminals.
const maxTokenName = 64

// AddToken stores a token whose secret the caller chose (a bootstrap token from
// the environment). The secret must have the token form.
func (r *Registry) AddToken(name, role, secret string) (*Token, error) {
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
	t := &Token{ID: m[1], Name: name, Role: role, CreatedAt: r.Now().UTC(), Hash: hashSecret(secret)}
	err := r.Meta.Update(func(tx MetaTx) error {
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
	err := r.Meta.View(func(tx MetaTx) (err error) {
		t, err = tx.Token(id)
		return err
	})
	return t, err
}

// Tokens lists every token, without hashes.
func (r *Registry) Tokens(_ context.Context) ([]Token, error) {
	var out []Token
	err := r.Meta.View(func(tx MetaTx) (err error) {
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
func (r *Registry) RevokeToken(_ context.Context, id string) error {
	return r.Meta.Update(func(tx MetaTx) error {
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
