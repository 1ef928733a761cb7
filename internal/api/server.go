package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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

	ln   net.Listener
	srv  *http.Server
	done chan error
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
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.Addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       s.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn),
	}
	s.done = make(chan error, 1)
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
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Done reports the server stopping by itself.
func (s *Server) Done() <-chan error { return s.done }

// Close stops accepting, lets requests in flight finish (up to ctx), then closes.
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
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
