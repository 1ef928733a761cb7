package scorerapi

import (
	"net"
	"sync"
)

// limitListener bounds the connections a server holds: in all, and from one
// address. Past either, a new connection is closed as soon as it is accepted,
// so that idle keep-alive connections, which need no token, cannot take the
// process's memory and file descriptors (5,000 of them held 88 MB, and some
// 20,000 would leave none for scorers). 0 is no bound.
type limitListener struct {
	net.Listener
	total, perAddr int

	mu     sync.Mutex
	open   int
	byAddr map[string]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := remoteHost(c)
		l.mu.Lock()
		if (l.total > 0 && l.open >= l.total) || (l.perAddr > 0 && l.byAddr[host] >= l.perAddr) {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open++
		l.byAddr[host]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, l: l, host: host}, nil
	}
}

func (l *limitListener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byAddr[host]--; l.byAddr[host] <= 0 {
		delete(l.byAddr, host)
	}
}

func remoteHost(c net.Conn) string {
	if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		return host
	}
	return c.RemoteAddr().String()
}

// limitedConn gives its place back once, when it closes.
type limitedConn struct {
	net.Conn
	l    *limitListener
	host string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.host) })
	return err
}
