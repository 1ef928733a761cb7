package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
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

var bucketTokens = []byte("tokens")

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

func (r *Registry) putToken(tx *bolt.Tx, t *Token) error {
	b, err := tx.CreateBucketIfNotExists(bucketTokens)
	if err != nil {
		return err
	}
	buf, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return b.Put([]byte(t.ID), buf)
}

// CreateToken makes a token with a role and returns its secret, shown only now.
func (r *Registry) CreateToken(_ context.Context, name, role string) (*Token, string, error) {
	secret := NewTokenSecret()
	t, err := r.AddToken(name, role, secret)
	return t, secret, err
}

// AddToken stores a token whose secret the caller chose (a bootstrap token from
// the environment). The secret must have the token form.
func (r *Registry) AddToken(name, role, secret string) (*Token, error) {
	if !ValidRole(role) {
		return nil, fmt.Errorf("%w: role %q: want admin, viewer or scorer", ErrInvalid, role)
	}
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "\x00\n\r") {
		return nil, fmt.Errorf("%w: token name must be 1–64 printable characters", ErrInvalid)
	}
	m := tokenRE.FindStringSubmatch(secret)
	if m == nil {
		return nil, fmt.Errorf("%w: a token has the form mo_<12 hex>_<40 hex> (make one with `modelctl token create`)", ErrInvalid)
	}
	t := &Token{ID: m[1], Name: name, Role: role, CreatedAt: r.Now().UTC(), Hash: hashSecret(secret)}
	err := r.update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketTokens); b != nil && b.Get([]byte(t.ID)) != nil {
			var old Token
			json.Unmarshal(b.Get([]byte(t.ID)), &old)
			if old.Hash == t.Hash && old.Role == t.Role && !old.Revoked {
				*t = old
				return nil // the same bootstrap token again
			}
			return fmt.Errorf("token %s exists already: %w", t.ID, ErrConflict)
		}
		return r.putToken(tx, t)
	})
	return t, err
}

// Authenticate returns the live token a secret belongs to.
func (r *Registry) Authenticate(secret string) (*Token, error) {
	m := tokenRE.FindStringSubmatch(secret)
	if m == nil {
		return nil, ErrUnauthenticated
	}
	var t Token
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return ErrUnauthenticated
		}
		v := b.Get([]byte(m[1]))
		if v == nil {
			return ErrUnauthenticated
		}
		return json.Unmarshal(v, &t)
	})
	if err != nil {
		return nil, ErrUnauthenticated
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(t.Hash)) != 1 || t.Revoked {
		return nil, ErrUnauthenticated
	}
	t.Hash = ""
	return &t, nil
}

// Tokens lists every token, without hashes.
func (r *Registry) Tokens(_ context.Context) ([]Token, error) {
	var out []Token
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var t Token
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			t.Hash = ""
			out = append(out, t)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// RevokeToken revokes a token by id; it authenticates no more.
func (r *Registry) RevokeToken(_ context.Context, id string) error {
	return r.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		var v []byte
		if b != nil {
			v = b.Get([]byte(id))
		}
		if v == nil {
			return fmt.Errorf("token %q: %w", id, ErrNotFound)
		}
		var t Token
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		t.Revoked = true
		return r.putToken(tx, &t)
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
	var t Token
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return ErrUnauthenticated
		}
		v := b.Get([]byte(id))
		if v == nil {
			return ErrUnauthenticated
		}
		return json.Unmarshal(v, &t)
	})
	if err != nil || t.Revoked {
		return nil, ErrUnauthenticated
	}
	t.Hash = ""
	return &t, nil
}
