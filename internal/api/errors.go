// Package api holds the HTTP surface of both servers: the control plane's /api/v1
// and the scorer's /v1/score, with request validation, error mapping and SSE.
package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/wire"
)

// requestError is a handler's own bad-input error with a status of its choosing.
type requestError struct {
	status     int
	code       string
	msg        string
	retryAfter int // seconds; set on 429 and 503
}

func (e *requestError) Error() string { return e.msg }

func badRequest(msg string) error {
	return &requestError{status: http.StatusBadRequest, code: "invalid_request", msg: msg}
}

// statusOf is the one mapping from error kinds to HTTP status and code.
func statusOf(err error) (int, string) {
	var re *requestError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &re):
		return re.status, re.code
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			return he.Code, "not_found"
		case http.StatusMethodNotAllowed:
			return he.Code, "method_not_allowed"
		case http.StatusRequestEntityTooLarge:
			return he.Code, "too_large"
		}
		return he.Code, "http_error"
	case errors.Is(err, registry.ErrDigestMismatch):
		return http.StatusBadRequest, "digest_mismatch"
	case errors.Is(err, registry.ErrInvalid):
		return http.StatusBadRequest, "invalid_request"
	case errors.Is(err, registry.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, registry.ErrConflict):
		return http.StatusConflict, "conflict"
	case errors.Is(err, registry.ErrForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, registry.ErrInvalidModel):
		return http.StatusUnprocessableEntity, "invalid_model"
	case errors.Is(err, registry.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, registry.ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable"
	}
	return http.StatusInternalServerError, "internal"
}

// errorHandler writes errors as JSON and logs only the internal ones.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, retryAfter, body := errorReply(log, err, c.Request().Method, c.Request().URL.Path)
		if retryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		}
		if c.Request().Method == http.MethodHead {
			c.NoContent(status)
			return
		}
		c.JSON(status, body)
	}
}

// errorReply is how err is answered, whichever server carries the request: its
// status, its Retry-After in seconds (0 for none) and its body. It logs internal
// errors.
func errorReply(log *slog.Logger, err error, method, path string) (int, int, wire.ErrorBody) {
	status, code := statusOf(err)
	msg := err.Error()
	var he *echo.HTTPError
	if errors.As(err, &he) {
		if s, ok := he.Message.(string); ok {
			msg = s
		}
	}
	if status >= 500 {
		log.Error("request failed", "method", method, "path", path, "err", err)
		if status == http.StatusInternalServerError {
			msg = "internal error: " + msg
		}
	}
	retryAfter := 0
	var re *requestError
	if errors.As(err, &re) {
		retryAfter = re.retryAfter
	}
	return status, retryAfter, wire.ErrorBody{Error: wire.Error{Code: code, Message: msg}}
}

func newEcho(log *slog.Logger) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(log)
	return e
}

// headAsGet answers HEAD as GET: a HEAD is a GET without the body, and the HTTP
// server (net/http or fasthttp) drops the body by itself, as it still holds the
// request as HEAD. Health checks that send HEAD got 405 from every route. The
// watch stream is left out: it has no end to answer a HEAD with.
func headAsGet(h http.Handler) http.Handler {
	const watchPath = "/api/v1/watch"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && r.URL.Path != watchPath {
			get := r.Clone(r.Context())
			get.Method = http.MethodGet
			r = get
		}
		h.ServeHTTP(w, r)
	})
}
