package scorerapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Server serves the scorer's REST routes (Scorer.Handler) on fasthttp, with
// the timeouts every server here must set. Construct it, then Open binds the
// listener (errors surface at once) and serves in the background until Close.
type Server struct {
	Addr    string
	Handler *Handler
	Logger  *slog.Logger

	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// TLSCert and TLSKey, when both set, serve HTTPS.
	TLSCert, TLSKey string
	// MaxConns and MaxConnsPerAddr bound the connections held at once, in all
	// and from one remote address (0: no bound); past them a new connection is
	// closed at once.
	MaxConns, MaxConnsPerAddr int

	ln     net.Listener
	scheme string
	fast   *fasthttp.Server
	// fresh holds connections that have not sent a request yet: Shutdown would
	// wait five seconds for each, so Close closes them at once, and closing
	// turns away those accepted after that.
	mu      sync.Mutex
	fresh   map[net.Conn]struct{}
	closing bool
	done    chan error
}

// NewServer returns a server for addr with default timeouts: ReadTimeout
// covers a request's head and body, WriteTimeout its answer.
func NewServer(addr string, h *Handler, log *slog.Logger) *Server {
	return &Server{
		Addr: addr, Handler: h, Logger: log,
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  120 * time.Second,
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
	s.fast = &fasthttp.Server{
		Handler:      s.Handler.Serve,
		ErrorHandler: s.Handler.Error,
		// Bodies are streamed to the handler, which reads them as they
		// arrive (never reserving a declared length) and bounds them.
		StreamRequestBody:  true,
		MaxRequestBodySize: int(s.Handler.MaxBodyBytes),
		// The request line and headers must fit in the read buffer.
		ReadBufferSize:        16 << 10,
		ReadTimeout:           s.ReadTimeout,
		WriteTimeout:          s.WriteTimeout,
		IdleTimeout:           s.IdleTimeout,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		Logger:                fastLogger{s.Logger},
	}
	// fasthttp counts a connection active before its first byte arrives, so
	// its shutdown would wait out the read timeout for a connection that
	// never sends one: freshListener tracks those for Close.
	go func() { s.done <- s.fast.Serve(freshListener{ln, s}) }()
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
	if s.fast == nil {
		return nil
	}
	s.dropFresh()
	return s.fast.ShutdownWithContext(ctx)
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

// freshListener hands out connections that count as fresh, for Close to drop,
// until their first byte arrives: what net/http calls StateNew.
type freshListener struct {
	net.Listener
	s *Server
}

func (l freshListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := &freshConn{Conn: c, s: l.s}
	l.s.mu.Lock()
	closing := l.s.closing
	if !closing {
		l.s.fresh[fc] = struct{}{}
	}
	l.s.mu.Unlock()
	if closing {
		c.Close() // the server reads nothing from it and lets it go
	}
	return fc, nil
}

type freshConn struct {
	net.Conn
	s    *Server
	used atomic.Bool
	// linger: the server answered without reading the whole request (a body
	// too large), so Close lets the client read that answer first.
	linger atomic.Bool
}

func (c *freshConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.used.Load() {
		c.used.Store(true)
		c.forget()
	}
	if err != nil && !c.used.Load() {
		answerPlainHTTP(err)
	}
	return n, err
}

// answerPlainHTTP tells a client that sent plain HTTP to a TLS port what it did,
// as net/http does, rather than close the connection in silence.
func answerPlainHTTP(err error) {
	var re tls.RecordHeaderError
	if !errors.As(err, &re) || re.Conn == nil {
		return
	}
	for _, m := range []string{"GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH"} {
		if string(re.RecordHeader[:]) == m {
			re.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			re.Conn.Close()
			return
		}
	}
}

func (c *freshConn) Close() error {
	c.forget()
	if c.linger.Load() {
		drainBeforeClose(c.Conn)
	}
	return c.Conn.Close()
}

// Lingering close, as net/http's server does it: closing a TCP connection with
// unread data in it resets it, and a client still sending its body may then
// lose the answer already on its way (the 413) to "connection reset by peer".
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 8 << 20
)

// drainBeforeClose ends the sending side, then reads and drops what the client
// still sends, until it stops, lingerTime passes or lingerBytes arrive.
func drainBeforeClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, io.LimitReader(c, lingerBytes))
}

func (c *freshConn) forget() {
	c.s.mu.Lock()
	delete(c.s.fresh, c)
	c.s.mu.Unlock()
}

// fastLogger passes fasthttp's complaints (connection errors, panics) to the log.
type fastLogger struct{ log *slog.Logger }

func (l fastLogger) Printf(format string, args ...any) { l.log.Warn(fmt.Sprintf(format, args...)) }
