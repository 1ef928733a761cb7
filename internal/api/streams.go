package api

import (
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/modelops/modelops/internal/registry"
)

// Watch streams are held open for as long as their clients like, each with a
// connection, two goroutines and a registry read on every commit (about 40 KB
// each), so one token opening thousands of them grew memory without limit and
// would exhaust the process's file descriptors, shutting every scorer out.
const (
	// DefaultMaxWatchStreams bounds the open watch streams in all (about
	// 400 MB at most), below the file descriptors a control plane is
	// usually given.
	DefaultMaxWatchStreams = 10000
	// DefaultMaxWatchStreamsPerToken bounds one token's (one address's with
	// auth off): a node holds one a model it serves (a report covers 50),
	// with room for a restart's streams not yet closed; a dashboard one a tab.
	DefaultMaxWatchStreamsPerToken = 128
	// DefaultMaxDownloadsPerToken bounds one token's artifact downloads at
	// once: each holds a connection and an open blob for up to 30 minutes, so a
	// scorer token reading slowly could otherwise hold thousands.
	DefaultMaxDownloadsPerToken = 64
)

// streamLimits counts the open watch streams, in all and per key.
type streamLimits struct {
	mu    sync.Mutex
	total int
	byKey map[string]int
}

// acquire takes one stream for key, or answers why not: 429 past the key's
// share, 503 past the total. The caller releases what it took.
func (s *streamLimits) acquire(key string, perKey, total int) error {
	return s.acquireWhat("watch streams", key, perKey, total)
}

func (s *streamLimits) acquireWhat(what, key string, perKey, total int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byKey == nil {
		s.byKey = make(map[string]int)
	}
	if s.byKey[key] >= perKey {
		return &requestError{status: http.StatusTooManyRequests, code: "too_many_requests", retryAfter: 5,
			msg: fmt.Sprintf("this token already holds %d %s, the most one may", perKey, what)}
	}
	if s.total >= total {
		return &requestError{status: http.StatusServiceUnavailable, code: "unavailable", retryAfter: 5,
			msg: fmt.Sprintf("the control plane already serves %d %s, the most it takes", total, what)}
	}
	s.byKey[key]++
	s.total++
	return nil
}

func (s *streamLimits) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.byKey[key]--; s.byKey[key] <= 0 {
		delete(s.byKey, key)
	}
}

// streamKey is what a stream is counted against: its token, else (auth off)
// the connection's own address; echo's RealIP believes X-Forwarded-For, which
// a client writes as it likes.
func streamKey(c echo.Context) string {
	if t, ok := c.Get(tokenKey).(*registry.Token); ok {
		return "token " + t.ID
	}
	host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
	if err != nil {
		host = c.Request().RemoteAddr
	}
	return "addr " + host
}
