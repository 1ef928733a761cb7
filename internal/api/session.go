package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelops/modelops/internal/registry"
)

// SessionCookie names the dashboard's session cookie.
const SessionCookie = "modelops_session"

// sessionTTL bounds a dashboard session.
const sessionTTL = 12 * time.Hour

type session struct {
	tokenID string
	csrf    string
	expires time.Time
}

// SessionStore keeps the dashboard's sessions where every control-plane
// replica sees them (etcd, with a lease per session), so that any replica signs
// a browser in and a restart signs nobody out. Keys are already hashed; a value
// is gone after its ttl.
type SessionStore interface {
	PutSession(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Session returns a live session's value, or an error wrapping
	// registry.ErrNotFound.
	Session(ctx context.Context, key string) ([]byte, error)
	DeleteSession(ctx context.Context, key string) error
}

// sessions are the dashboard's signed-in browsers: in Store when there is one,
// else in memory, where a restart signs everyone out (the safe direction).
type sessions struct {
	store SessionStore

	mu sync.Mutex
	m  map[string]session
}

// sessionRecord is a session as a SessionStore keeps it.
type sessionRecord struct {
	TokenID string    `json:"token_id"`
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

// sessionKey is what a store keeps a session under: a hash of its id, so that
// a copy of the store signs nobody in.
func sessionKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *sessions) create(ctx context.Context, tokenID string) (id string, ss session, err error) {
	now := time.Now()
	id = randomID()
	ss = session{tokenID: tokenID, csrf: randomID(), expires: now.Add(sessionTTL)}
	if s.store != nil {
		b, _ := json.Marshal(sessionRecord{TokenID: ss.tokenID, CSRF: ss.csrf, Expires: ss.expires})
		return id, ss, s.store.PutSession(ctx, sessionKey(id), b, sessionTTL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]session{}
	}
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	s.m[id] = ss
	return id, ss, nil
}

func (s *sessions) get(ctx context.Context, id string) (session, bool) {
	if s.store != nil {
		b, err := s.store.Session(ctx, sessionKey(id))
		var r sessionRecord
		if err != nil || json.Unmarshal(b, &r) != nil || time.Now().After(r.Expires) {
			return session{}, false
		}
		return session{tokenID: r.TokenID, csrf: r.CSRF, expires: r.Expires}, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[id]
	if !ok || time.Now().After(ss.expires) {
		delete(s.m, id)
		return session{}, false
	}
	return ss, true
}

func (s *sessions) drop(ctx context.Context, id string) error {
	if s.store != nil {
		return s.store.DeleteSession(ctx, sessionKey(id))
	}
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
	return nil
}

// fromSession authenticates a dashboard request by its cookie. Requests that
// change anything must also carry the session's CSRF token in X-CSRF-Token.
func (cp *ControlPlane) fromSession(c echo.Context) (*registry.Token, error) {
	ck, err := c.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return nil, nil
	}
	ss, ok := cp.sessions.get(c.Request().Context(), ck.Value)
	if !ok {
		return nil, &requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: "the session expired; sign in again"}
	}
	t, err := cp.Registry.TokenByID(ss.tokenID)
	if err != nil {
		cp.sessions.drop(c.Request().Context(), ck.Value)
		return nil, &requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: "the session's token was revoked; sign in again"}
	}
	m := c.Request().Method
	if m != http.MethodGet && m != http.MethodHead {
		got := c.Request().Header.Get("X-CSRF-Token")
		if subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) != 1 {
			return nil, &requestError{status: http.StatusForbidden, code: "csrf", msg: "missing or wrong X-CSRF-Token"}
		}
	}
	return t, nil
}

// SessionInfo tells the dashboard who is signed in.
type SessionInfo struct {
	Name string `json:"name"`
	Role string `json:"role"`
	CSRF string `json:"csrf"`
	// NoAuth is set when the control plane runs without tokens
	// (--insecure-no-auth): everyone is an admin and there is no one to sign out.
	NoAuth bool `json:"no_auth,omitempty"`
}

func (cp *ControlPlane) login(c echo.Context) error {
	var b struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	// A token holds no spaces: ones around it came with a copy and paste.
	t, err := cp.Registry.Authenticate(strings.TrimSpace(b.Token))
	if err != nil {
		return &requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: "that token is not valid"}
	}
	id, ss, err := cp.sessions.create(c.Request().Context(), t.ID)
	if err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.IsTLS(), Expires: ss.expires})
	return c.JSON(http.StatusOK, SessionInfo{Name: t.Name, Role: t.Role, CSRF: ss.csrf})
}

func (cp *ControlPlane) logout(c echo.Context) error {
	if ck, err := c.Cookie(SessionCookie); err == nil {
		if _, err := cp.fromSession(c); err != nil {
			return err
		}
		if err := cp.sessions.drop(c.Request().Context(), ck.Value); err != nil {
			return err
		}
	}
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	return c.NoContent(http.StatusNoContent)
}

func (cp *ControlPlane) sessionInfo(c echo.Context) error {
	if !cp.RequireAuth {
		return c.JSON(http.StatusOK, SessionInfo{Name: "anonymous", Role: registry.RoleAdmin, NoAuth: true})
	}
	ck, err := c.Cookie(SessionCookie)
	if err != nil {
		return &requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: "not signed in"}
	}
	ss, ok := cp.sessions.get(c.Request().Context(), ck.Value)
	if !ok {
		return &requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: "not signed in"}
	}
	t, err := cp.Registry.TokenByID(ss.tokenID)
	if err != nil {
		return &requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: "the token was revoked"}
	}
	return c.JSON(http.StatusOK, SessionInfo{Name: t.Name, Role: t.Role, CSRF: ss.csrf})
}

// LeaderInfo says which control-plane replica runs the monitor, when several
// share an etcd registry (GET /api/v1/leader; a single control plane has no
// such route).
type LeaderInfo struct {
	Monitor string `json:"monitor"`
	Self    string `json:"self"`
	Leading bool   `json:"leading"`
}
