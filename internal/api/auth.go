package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modelops/modelops/internal/registry"
)

// Permissions a route needs.
type permission int

const (
	permRead   permission = iota // viewer, scorer, admin
	permScorer                   // scorer, admin: watch, artifacts, reports
	permAdmin                    // admin
)

func (p permission) allows(role string) bool {
	switch p {
	case permRead:
		return registry.ValidRole(role)
	case permScorer:
		return role == registry.RoleScorer || role == registry.RoleAdmin
	}
	return role == registry.RoleAdmin
}

func (p permission) String() string {
	return [...]string{"a viewer, scorer or admin token", "a scorer or admin token", "an admin token"}[p]
}

const tokenKey = "modelops.token"

// bearer returns the token a request carries, if any.
func bearer(r *http.Request) string { return bearerOf(r.Header.Get("Authorization")) }

// bearerOf is the token of an Authorization header's value.
func bearerOf(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// authorize checks the bearer token against the registry: 401 without a valid
// token, 403 with one whose role lacks the permission. With auth off, every
// request passes as "anonymous".
func (cp *ControlPlane) authorize(p permission) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !cp.RequireAuth {
				return next(c)
			}
			secret := bearer(c.Request())
			if secret == "" {
				// A dashboard session stands in for the token.
				t, err := cp.fromSession(c)
				if err != nil {
					return err
				}
				if t != nil {
					if !p.allows(t.Role) {
						return &requestError{status: http.StatusForbidden, code: "forbidden", msg: "signed in as " + t.Name + " with role " + t.Role + "; this needs " + p.String()}
					}
					c.Set(tokenKey, t)
					return next(c)
				}
				return &requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: "this needs " + p.String() + ": send Authorization: Bearer TOKEN (modelctl reads MODELCTL_TOKEN)"}
			}
			t, err := cp.Registry.Authenticate(secret)
			if err != nil {
				if errors.Is(err, registry.ErrUnauthenticated) {
					return &requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: "the token is not valid (unknown, revoked or malformed)"}
				}
				return err
			}
			if !p.allows(t.Role) {
				return &requestError{status: http.StatusForbidden, code: "forbidden", msg: "token " + t.Name + " has role " + t.Role + "; this needs " + p.String()}
			}
			c.Set(tokenKey, t)
			return next(c)
		}
	}
}

// actorOf names who acts: the token's name, or "anonymous" with auth off.
func actorOf(c echo.Context) string {
	if t, ok := c.Get(tokenKey).(*registry.Token); ok {
		return t.Name
	}
	return "anonymous"
}
