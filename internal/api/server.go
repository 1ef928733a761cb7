package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is an HTTP server with the timeouts every server here must set.
// Construct it, set Handler, then Open binds the listener (errors surface at once)
// and serves in the background until Close.
type Server struct {
	Addr    string
	Handler http.Handler
	Logger  *slog.Logger

	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// TLSCert and TLSKey, when both set, serve HTTPS.
	TLSCert, TLSKey string
	// MaxConns and MaxConnsPerAddr bound the connections held at once, in all
	// and from one remote address (0: no bound); past them a new connection is
	// closed at once.
	MaxConns, MaxConnsPerAddr int

	ln     net.Listener
	scheme string
	srv    *http.Server
	// fresh holds connections that have not sent a request yet: Shutdown would
	// wait five seconds for each, so Close closes them at once, and closing
	// turns away those accepted after that.
	mu      sync.Mutex
	fresh   map[net.Conn]struct{}
	closing bool
	done    chan error
}

// NewServer returns a server for addr with default timeouts. ReadTimeout and
// WriteTimeout bound whole requests; streaming handlers (pushes, the watch stream)
// extend their own deadlines.
func NewServer(addr string, h http.Handler, log *slog.Logger) *Server {
	return &Server{
		Addr: addr, Handler: h, Logger: log,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
}

// Open binds the listener and starts serving.
func (s *Server) Open() error {
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return fmt.Errorf("TLS needs both a certificate and a key")
	}
	var tlsCfg *tls.Config
	if s.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.Addr, err)
	}
	if s.MaxConns > 0 || s.MaxConnsPerAddr > 0 {
		ln = &limitListener{Listener: ln, total: s.MaxConns, perAddr: s.MaxConnsPerAddr, byAddr: map[string]int{}}
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
		s.scheme = "https"
	}
	s.ln = ln
	s.done = make(chan error, 1)
	s.fresh = map[net.Conn]struct{}{}
	s.srv = &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       s.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn),
		ConnState: func(c net.Conn, st http.ConnState) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if st == http.StateNew {
				s.fresh[c] = struct{}{}
			} else {
				delete(s.fresh, c)
			}
		},
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return nil
}

// URL is the base URL the server listens on, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string {
	if s.scheme == "" {
		return "http://" + s.ln.Addr().String()
	}
	return s.scheme + "://" + s.ln.Addr().String()
}

// Done reports the server stopping by itself.
func (s *Server) Done() <-chan error { return s.done }

// Close stops accepting, lets requests in flight finish (up to ctx), then closes.
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	s.srv.SetKeepAlivesEnabled(false)
	s.dropFresh()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

// dropFresh closes the connections that have not sent anything yet, and from
// now on every connection as soon as it is accepted: the listener stays open
// until the shutdown that follows closes it.
func (s *Server) dropFresh() {
	s.mu.Lock()
	s.closing = true
	fresh := make([]net.Conn, 0, len(s.fresh))
	for c := range s.fresh {
		fresh = append(fresh, c)
	}
	s.mu.Unlock()
	for _, c := range fresh {
		c.Close()
	}
}

// extendDeadlines lifts the server's read and write timeouts for a long stream.
func extendDeadlines(w http.ResponseWriter, read, write time.Duration) {
	rc := http.NewResponseController(w)
	now := time.Now()
	if read > 0 {
		rc.SetReadDeadline(now.Add(read))
	} else if read < 0 {
		rc.SetReadDeadline(time.Time{})
	}
	if write > 0 {
		rc.SetWriteDeadline(now.Add(write))
	} else if write < 0 {
		rc.SetWriteDeadline(time.Time{})
	}
}
