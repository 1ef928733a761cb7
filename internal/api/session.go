package api

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"mime"
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

// Caps on dashboard sessions: per token (a person's browsers), and in all (the
// memory they take, about 300 bytes each). A new session past a cap ends the
// oldest one it counts against, so a token that signs in in a loop pushes out
// only its own sessions, and only many tokens can crowd out others'.
const (
	maxSessionsPerToken = 100
	maxSessions         = 10000
)

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

// sessionEntry is a session where it is kept: in the list of all sessions and
// in its token's, both oldest first.
type sessionEntry struct {
	id       string
	s        session
	all, own *list.Element
}

// sessions are the dashboard's signed-in browsers: in store when there is one
// (the caps below are then not enforced: a lease ends each session), else in
// memory, where a restart signs everyone out (the safe direction). Every session lives sessionTTL
// from its creation, so creation order is expiry order: the expired ones are at
// the front of the list of all, and a login sweeps them in constant time per
// session swept, never walking the live ones.
type sessions struct {
	store SessionStore

	mu      sync.Mutex
	m       map[string]*sessionEntry
	all     list.List             // of *sessionEntry, oldest first
	byToken map[string]*list.List // token ID → its sessions, oldest first
	now     func() time.Time      // the clock; tests may replace it
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *sessions) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *sessions) create(ctx context.Context, tokenID string) (id string, ss session, err error) {
	if s.store != nil {
		id = randomID()
		ss = session{tokenID: tokenID, csrf: randomID(), expires: s.clock().Add(sessionTTL)}
		b, _ := json.Marshal(sessionRecord{TokenID: ss.tokenID, CSRF: ss.csrf, Expires: ss.expires})
		return id, ss, s.store.PutSession(ctx, sessionKey(id), b, sessionTTL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m, s.byToken = map[string]*sessionEntry{}, map[string]*list.List{}
	}
	now := s.clock()
	for f := s.all.Front(); f != nil && now.After(f.Value.(*sessionEntry).s.expires); f = s.all.Front() {
		s.remove(f.Value.(*sessionEntry))
	}
	if own := s.byToken[tokenID]; own != nil && own.Len() >= maxSessionsPerToken {
		s.remove(own.Front().Value.(*sessionEntry))
	}
	if s.all.Len() >= maxSessions {
		s.remove(s.all.Front().Value.(*sessionEntry))
	}
	// Looked up after the evictions: one may have emptied the token's list,
	// and dropped it.
	own := s.byToken[tokenID]
	if own == nil {
		own = list.New()
		s.byToken[tokenID] = own
	}
	id = randomID()
	ss = session{tokenID: tokenID, csrf: randomID(), expires: now.Add(sessionTTL)}
	e := &sessionEntry{id: id, s: ss}
	e.all, e.own = s.all.PushBack(e), own.PushBack(e)
	s.m[id] = e
	return id, ss, nil
}

// remove forgets e; s.mu is held.
func (s *sessions) remove(e *sessionEntry) {
	delete(s.m, e.id)
	s.all.Remove(e.all)
	if own := s.byToken[e.s.tokenID]; own != nil {
		own.Remove(e.own)
		if own.Len() == 0 {
			delete(s.byToken, e.s.tokenID)
		}
	}
}

func (s *sessions) get(ctx context.Context, id string) (session, bool) {
	if s.store != nil {
		b, err := s.store.Session(ctx, sessionKey(id))
		var r sessionRecord
		if err != nil || json.Unmarshal(b, &r) != nil || s.clock().After(r.Expires) {
			return session{}, false
		}
		return session{tokenID: r.TokenID, csrf: r.CSRF, expires: r.Expires}, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if !ok {
		return session{}, false
	}
	if s.clock().After(e.s.expires) {
		s.remove(e)
		return session{}, false
	}
	return e.s, true
}

func (s *sessions) drop(ctx context.Context, id string) error {
	if s.store != nil {
		return s.store.DeleteSession(ctx, sessionKey(id))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[id]; ok {
		s.remove(e)
	}
	return nil
}

// counts returns how many sessions are kept, by each index: all three agree.
func (s *sessions) counts() (byID, inList, byToken int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.byToken {
		byToken += l.Len()
	}
	return len(s.m), s.all.Len(), byToken
}

// SessionCount is the number of dashboard sessions kept.
func (cp *ControlPlane) SessionCount() int {
	n, _, _ := cp.sessions.counts()
	return n
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
		if err := sameOrigin(c.Request()); err != nil {
			return nil, err
		}
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

// crossOrigin refuses a state-changing request a browser sent from another
// site: Sec-Fetch-Site says so, or (from older browsers) an Origin that is not
// the request's host. Clients that are no browser send neither and pass.
var crossOrigin = http.NewCrossOriginProtection()

// sameOrigin is 403 for a state-changing request from another site.
func sameOrigin(r *http.Request) error {
	if err := crossOrigin.Check(r); err != nil {
		return &requestError{status: http.StatusForbidden, code: "cross_origin", msg: "refused: a state-changing request from another site (Origin " + truncate(r.Header.Get("Origin"), 100) + ", Sec-Fetch-Site " + truncate(r.Header.Get("Sec-Fetch-Site"), 20) + ")"}
	}
	return nil
}

// login takes application/json only: a form from another site can post
// text/plain (or urlencoded) without a preflight, and would sign a browser in
// with the attacker's token.
func (cp *ControlPlane) login(c echo.Context) error {
	if err := sameOrigin(c.Request()); err != nil {
		return err
	}
	if mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType)); err != nil || mt != echo.MIMEApplicationJSON {
		return &requestError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", msg: "sign in with Content-Type: application/json"}
	}
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
	if err := sameOrigin(c.Request()); err != nil {
		return err
	}
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
