package testutil

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3 test credentials; the gateway accepts exactly these.
const (
	S3Access = "modelops-test"
	S3Secret = "modelops-test-secret"
	S3Region = "us-east-1"
)

// S3Server is a Versity S3 Gateway on 127.0.0.1 over a temp directory.
type S3Server struct {
	tb   testing.TB
	bin  string
	dir  string
	Port int
	cmd  *exec.Cmd
}

// VersityBinary finds versitygw: $VERSITYGW, then PATH, then GOPATH/bin.
func VersityBinary() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(string(trimNL(gopath)), "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("versitygw not found: run `make s3` (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0) or set VERSITYGW")
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// MustS3 starts a gateway with one bucket and sets the AWS credential variables
// for the test. Its absence fails the test: S3 is a real component here.
func MustS3(tb testing.TB, bucket string) *S3Server {
	tb.Helper()
	bin, err := VersityBinary()
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &S3Server{tb: tb, bin: bin, dir: tb.TempDir(), Port: port}
	tb.Setenv("AWS_ACCESS_KEY_ID", S3Access)
	tb.Setenv("AWS_SECRET_ACCESS_KEY", S3Secret)
	tb.Setenv("AWS_REGION", S3Region)
	tb.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	s.Start()
	tb.Cleanup(s.Stop)
	cl := s3.New(s3.Options{
		Region: S3Region, BaseEndpoint: aws.String(s.Endpoint()), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(S3Access, S3Secret, ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		tb.Fatalf("create bucket %s: %v", bucket, err)
	}
	return s
}

// Endpoint is the gateway's URL.
func (s *S3Server) Endpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", s.Port) }

// StoreURL is the s3:// URL of bucket/prefix on this gateway; extra is appended
// to the query.
func (s *S3Server) StoreURL(bucket, prefix, extra string) string {
	u := fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&path_style=true&retries=2&timeout=5s", bucket, prefix, s.Endpoint(), S3Region)
	if extra != "" {
		u += "&" + extra
	}
	return u
}

// Start runs the gateway (again, after Stop) on the same port and directory, and
// waits until it answers.
func (s *S3Server) Start() {
	s.tb.Helper()
	s.cmd = exec.Command(s.bin, "--access", S3Access, "--secret", S3Secret, "--port", fmt.Sprintf("127.0.0.1:%d", s.Port), "posix", s.dir)
	s.cmd.Stdout, s.cmd.Stderr = nil, nil
	if testing.Verbose() {
		s.cmd.Stderr = os.Stderr
	}
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("start versitygw: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint())
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.tb.Fatalf("versitygw did not answer on %s: %v", s.Endpoint(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the gateway (SIGKILL, as a crash would).
func (s *S3Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Dir is the gateway's posix root: DIR/BUCKET/KEY holds each object.
func (s *S3Server) Dir() string { return s.dir }
