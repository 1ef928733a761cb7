package testutil

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EtcdBinary finds etcd: $ETCD, then PATH, then Debian's /usr/bin/etcd (the
// etcd-server package).
func EtcdBinary() (string, error) {
	if p := os.Getenv("ETCD"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", nil
	}
	return "", fmt.Errorf("etcd not found: install Debian's etcd-server (apt-get install etcd-server) or set ETCD to the binary")
}

// EtcdCluster is a real etcd cluster of processes on 127.0.0.1, each member
// with its own data directory; members can be killed and started again.
type EtcdCluster struct {
	tb      testing.TB
	bin     string
	members []*etcdMember
	initial string
	opts    EtcdOptions
	scheme  string
}

// EtcdOptions change how a test cluster serves its clients.
type EtcdOptions struct {
	// TLS, when set, serves clients over TLS with CertFile and KeyFile and
	// asks for client certificates signed by CAFile.
	TLS *EtcdTLS
}

// EtcdTLS names PEM files.
type EtcdTLS struct {
	CAFile, CertFile, KeyFile string
}

type etcdMember struct {
	name         string
	dir          string
	client, peer int
	mu           sync.Mutex
	cmd          *exec.Cmd
	exited       chan struct{}
	log          syncBuffer
}

// syncBuffer is a buffer a process writes while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// MustEtcd starts a cluster of n members and waits until it has a leader. Its
// absence fails the test: etcd is a real component here.
func MustEtcd(tb testing.TB, n int) *EtcdCluster {
	tb.Helper()
	return MustEtcdWith(tb, n, EtcdOptions{})
}

// MustEtcdWith is MustEtcd with options.
func MustEtcdWith(tb testing.TB, n int, opts EtcdOptions) *EtcdCluster {
	tb.Helper()
	bin, err := EtcdBinary()
	if err != nil {
		tb.Fatal(err)
	}
	c := &EtcdCluster{tb: tb, bin: bin, opts: opts, scheme: "http"}
	if opts.TLS != nil {
		c.scheme = "https"
	}
	var initial []string
	for i := range n {
		m := &etcdMember{name: fmt.Sprintf("m%d", i), dir: tb.TempDir(), client: freePort(tb), peer: freePort(tb)}
		c.members = append(c.members, m)
		initial = append(initial, fmt.Sprintf("%s=http://127.0.0.1:%d", m.name, m.peer))
	}
	c.initial = strings.Join(initial, ",")
	tb.Cleanup(c.stopAll)
	for i := range c.members {
		c.Start(i)
	}
	c.WaitHealthy(0)
	return c
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Endpoints are the members' client addresses, HOST:PORT.
func (c *EtcdCluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, fmt.Sprintf("127.0.0.1:%d", m.client))
	}
	return out
}

// URL is the metadata store URL of a registry under prefix on this cluster.
func (c *EtcdCluster) URL(prefix string) string {
	return "etcd://" + strings.Join(c.Endpoints(), ",") + "/" + prefix
}

// Start starts member i (again, on its data directory, after Kill).
func (c *EtcdCluster) Start(i int) {
	c.tb.Helper()
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		c.tb.Fatalf("etcd member %s is running already", m.name)
	}
	client := fmt.Sprintf("%s://127.0.0.1:%d", c.scheme, m.client)
	peer := fmt.Sprintf("http://127.0.0.1:%d", m.peer)
	var extra []string
	if t := c.opts.TLS; t != nil {
		extra = append(extra, "--cert-file", t.CertFile, "--key-file", t.KeyFile, "--trusted-ca-file", t.CAFile, "--client-cert-auth")
	}
	cmd := exec.Command(c.bin, append([]string{
		"--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", c.initial, "--initial-cluster-state", "new", "--initial-cluster-token", "modelops-test",
		// Short timeouts: a lost member is noticed, and a leader elected, in
		// about a second.
		"--heartbeat-interval", "50", "--election-timeout", "500",
		"--logger", "zap", "--log-level", "warn"}, extra...)...)
	m.log.Reset()
	cmd.Stdout, cmd.Stderr = &m.log, &m.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.tb.Fatalf("start etcd member %s: %v", m.name, err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(cmd, m.exited)
}

// Kill kills member i with SIGKILL and waits until it is gone.
func (c *EtcdCluster) Kill(i int) {
	c.tb.Helper()
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

func (c *EtcdCluster) stopAll() {
	for i, m := range c.members {
		if c.tb.Failed() {
			if l := m.log.String(); l != "" {
				c.tb.Logf("etcd member %s log (tail):\n%s", m.name, tail(l, 2000))
			}
		}
		c.Kill(i)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// WaitHealthy waits until member i answers its health check with a leader
// (at most 30s).
func (c *EtcdCluster) WaitHealthy(i int) {
	c.tb.Helper()
	url := fmt.Sprintf("%s://127.0.0.1:%d/health", c.scheme, c.members[i].client)
	hc := http.DefaultClient
	if t := c.opts.TLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			c.tb.Fatal(err)
		}
		ca, err := os.ReadFile(t.CAFile)
		if err != nil {
			c.tb.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok := healthy(ctx, hc, url)
		cancel()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("etcd member %s is not healthy after 30s; log:\n%s", c.members[i].name, tail(c.members[i].log.String(), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func healthy(ctx context.Context, hc *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
}

// MustTLSFiles writes a CA, and a certificate for 127.0.0.1 it signed (for
// both server and client use), as PEM files in a temp dir.
func MustTLSFiles(tb testing.TB) EtcdTLS {
	tb.Helper()
	dir := tb.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "modelops test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	files := EtcdTLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	for path, block := range map[string]*pem.Block{
		files.CAFile:   {Type: "CERTIFICATE", Bytes: caDER},
		files.CertFile: {Type: "CERTIFICATE", Bytes: der},
		files.KeyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return files
}
