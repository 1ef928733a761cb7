// Package s3blob is the blob store in an S3 bucket (s3://BUCKET/PREFIX?…): the
// only package that imports the AWS SDK.
package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/modelops/modelops/internal/registry"
)

// Store keeps blobs in an S3 bucket under PREFIX/blobs/sha256/<hex>.
//
// URL: s3://BUCKET/PREFIX?endpoint=URL&region=R&path_style=true
// &multipart_threshold=BYTES&part_size=BYTES&timeout=DURATION&retries=N.
// Credentials come from the SDK's default chain (AWS_ACCESS_KEY_ID, …).
type Store struct {
	Client *s3.Client
	Bucket string
	Prefix string
	// MultipartThreshold: artifacts at least this large go up in parts.
	MultipartThreshold int64
	// PartSize is the size of each part; memory per upload is one part.
	PartSize int64
	// Timeout bounds each call that moves no artifact body (head, delete, list…);
	// uploads and downloads are bounded by their context.
	Timeout time.Duration

	endpoint string
}

var _ registry.BlobStore = (*Store)(nil)

func init() {
	registry.RegisterBlobDriver("s3", func(ctx context.Context, u *url.URL) (registry.BlobStore, error) {
		return Open(ctx, u)
	})
}

// Open builds an S3 store from a parsed s3:// URL and checks the bucket.
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	if u.Host == "" {
		return nil, registry.Invalidf("s3 URL needs a bucket: s3://BUCKET/PREFIX")
	}
	q := u.Query()
	s := &Store{
		Bucket:             u.Host,
		Prefix:             strings.Trim(u.Path, "/"),
		MultipartThreshold: 64 << 20,
		PartSize:           16 << 20,
		Timeout:            30 * time.Second,
		endpoint:           q.Get("endpoint"),
	}
	intParam := func(name string, dst *int64, min int64) error {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < min {
				return registry.Invalidf("s3 URL: %s=%q must be a whole number ≥ %d", name, v, min)
			}
			*dst = n
		}
		return nil
	}
	if err := intParam("multipart_threshold", &s.MultipartThreshold, 1); err != nil {
		return nil, err
	}
	if err := intParam("part_size", &s.PartSize, 5<<20); err != nil {
		return nil, err
	}
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, registry.Invalidf("s3 URL: timeout=%q must be a duration such as 30s", v)
		}
		s.Timeout = d
	}
	retries := int64(5)
	if err := intParam("retries", &retries, 1); err != nil {
		return nil, err
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = int(retries)
				o.MaxBackoff = 5 * time.Second
			})
		}),
		config.WithHTTPClient(awshttp.NewBuildableClient().
			WithDialerOptions(func(d *net.Dialer) { d.Timeout = 5 * time.Second; d.KeepAlive = 30 * time.Second }).
			WithTransportOptions(func(t *http.Transport) {
				t.TLSHandshakeTimeout = 10 * time.Second
				t.ResponseHeaderTimeout = s.Timeout
				t.IdleConnTimeout = 90 * time.Second
				t.MaxIdleConnsPerHost = 16
			})),
	}
	if r := q.Get("region"); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	if s.endpoint != "" {
		// An S3-compatible service runs on no EC2 instance: asking the instance
		// metadata service for credentials only delays and clutters the error
		// of a missing key.
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	pathStyle := q.Get("path_style") == "true"
	s.Client = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if s.endpoint != "" {
			o.BaseEndpoint = aws.String(s.endpoint)
		}
		o.UsePathStyle = pathStyle
		// Checksums are the ones this store states (sha256), not the SDK's CRCs.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	hctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	if _, err := s.Client.HeadBucket(hctx, &s3.HeadBucketInput{Bucket: &s.Bucket}); err != nil {
		if strings.Contains(err.Error(), "get credentials") {
			return nil, fmt.Errorf("s3: bucket %q at %s: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (%w)", s.Bucket, s.endpointName(), s.wrap(err))
		}
		// A HEAD answer has no body, so the status is all S3 says: name what it
		// means rather than pass on the SDK's request and host ids.
		var re *awshttp.ResponseError
		if errors.As(err, &re) {
			switch re.HTTPStatusCode() {
			case http.StatusNotFound:
				return nil, fmt.Errorf("s3: bucket %q at %s: %w: it does not exist, or these credentials cannot see it (HeadBucket: HTTP 404)", s.Bucket, s.endpointName(), registry.ErrNotFound)
			case http.StatusForbidden, http.StatusUnauthorized:
				return nil, fmt.Errorf("s3: bucket %q at %s refuses these credentials (HeadBucket: HTTP %d): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and that they may read and write the bucket", s.Bucket, s.endpointName(), re.HTTPStatusCode())
			}
		}
		return nil, fmt.Errorf("s3: bucket %q at %s: %w", s.Bucket, s.endpointName(), s.wrap(err))
	}
	return s, nil
}

func (s *Store) endpointName() string {
	if s.endpoint != "" {
		return s.endpoint
	}
	return "AWS"
}

func (s *Store) String() string {
	return fmt.Sprintf("s3://%s/%s (%s)", s.Bucket, s.Prefix, s.endpointName())
}

func (s *Store) key(digest string) (string, error) {
	k, err := registry.BlobKey(digest)
	if err != nil {
		return "", err
	}
	if s.Prefix != "" {
		k = s.Prefix + "/" + k
	}
	return k, nil
}

// wrap maps S3 errors to registry kinds: a missing object is registry.ErrNotFound, and a
// store that cannot be reached is registry.ErrUnavailable.
func (s *Store) wrap(err error) error {
	if errors.Is(err, registry.ErrDigestMismatch) || errors.Is(err, registry.ErrInvalid) {
		return err
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := ae.ErrorCode()
		switch {
		case code == "NoSuchKey" || code == "NotFound" || code == "NoSuchBucket":
			return fmt.Errorf("%w: %v", registry.ErrNotFound, err)
		case strings.Contains(code, "Digest") || strings.Contains(code, "Checksum"):
			return fmt.Errorf("%w: S3 refused the bytes: %v", registry.ErrDigestMismatch, err)
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %s", registry.ErrUnavailable, brief(err))
}

// brief says what failed in an SDK error that never reached S3: the operation,
// the network's own words and how many attempts, without the layers of
// wrapping between them ("https response error StatusCode: 0, RequestID: , …").
func brief(err error) string {
	var ne *net.OpError
	if !errors.As(err, &ne) {
		return err.Error()
	}
	msg := ne.Error()
	var op *smithy.OperationError
	if errors.As(err, &op) {
		msg = "S3 " + op.Operation() + ": " + msg
	}
	var ma *retry.MaxAttemptsError
	if errors.As(err, &ma) {
		msg += fmt.Sprintf(" (%d attempts)", ma.Attempt)
	}
	return msg
}

func isPreconditionFailed(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "PreconditionFailed" || strings.Contains(ae.ErrorCode(), "412"))
}

// Put uploads with the blob's sha256 stated (x-amz-checksum-sha256) and
// If-None-Match: *, so S3 refuses bytes that do not match and never overwrites. A
// 412 means the digest is already stored: the stored bytes are verified instead.
// Large blobs go up in parts, each with its own checksum, one part in memory.
func (s *Store) Put(ctx context.Context, digest string, size int64, r io.Reader) error {
	key, err := s.key(digest)
	if err != nil {
		return err
	}
	if size >= s.MultipartThreshold {
		err = s.putMultipart(ctx, key, digest, size, r)
	} else {
		err = s.putSingle(ctx, key, digest, size, r)
	}
	if isPreconditionFailed(err) {
		return s.confirm(ctx, digest, size)
	}
	if err != nil {
		return fmt.Errorf("put blob %s: %w", digest, s.wrap(err))
	}
	return nil
}

func (s *Store) putSingle(ctx context.Context, key, digest string, size int64, r io.Reader) error {
	// The SDK signs the payload and may retry, so it needs to seek: a file does;
	// anything else is read into memory (it is below the multipart threshold).
	body, ok := r.(io.ReadSeeker)
	if !ok {
		b, err := io.ReadAll(io.LimitReader(r, size+1))
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	sum, err := hex.DecodeString(digest)
	if err != nil {
		return err
	}
	_, err = s.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.Bucket, Key: &key, Body: body, ContentLength: aws.Int64(size),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum)),
		IfNoneMatch:    aws.String("*"),
		ContentType:    aws.String("application/octet-stream"),
	})
	return err
}

func (s *Store) putMultipart(ctx context.Context, key, digest string, size int64, r io.Reader) error {
	up, err := s.Client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &s.Bucket, Key: &key, ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ContentType: aws.String("application/octet-stream"),
	})
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Timeout)
			s.Client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.Bucket, Key: &key, UploadId: up.UploadId})
			cancel()
		}
	}()
	whole := sha256.New()
	buf := make([]byte, s.PartSize)
	var parts []types.CompletedPart
	var sent int64
	for n := int32(1); ; n++ {
		k, err := io.ReadFull(r, buf)
		if err == io.EOF {
			break
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return err
		}
		whole.Write(buf[:k])
		sent += int64(k)
		ps := sha256.Sum256(buf[:k])
		psum := base64.StdEncoding.EncodeToString(ps[:])
		out, err := s.Client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.Bucket, Key: &key, UploadId: up.UploadId, PartNumber: aws.Int32(n),
			Body: bytes.NewReader(buf[:k]), ContentLength: aws.Int64(int64(k)),
			ChecksumSHA256: aws.String(psum),
		})
		if err != nil {
			return fmt.Errorf("part %d: %w", n, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n), ChecksumSHA256: aws.String(psum)})
		if k < len(buf) {
			break
		}
	}
	// Nothing is visible under the key until Complete; check the whole first.
	if sent != size {
		return fmt.Errorf("%w: got %d bytes, %d stated", registry.ErrDigestMismatch, sent, size)
	}
	if got := hex.EncodeToString(whole.Sum(nil)); got != digest {
		return fmt.Errorf("%w: content hashes to sha256 %s, %s stated", registry.ErrDigestMismatch, got, digest)
	}
	_, err = s.Client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.Bucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     aws.String("*"),
	})
	if err == nil {
		done = true
	}
	return err
}

// confirm verifies that the blob already stored under digest really holds it.
func (s *Store) confirm(ctx context.Context, digest string, size int64) error {
	rc, _, err := s.Open(ctx, digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, registry.NewVerifyingReader(rc, digest, size)); err != nil {
		return fmt.Errorf("existing blob %s in %s is damaged: %w", digest, s, err)
	}
	return nil
}

func (s *Store) Open(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	key, err := s.key(digest)
	if err != nil {
		return nil, 0, err
	}
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: &key})
	if err != nil {
		return nil, 0, fmt.Errorf("blob %s: %w", digest, s.wrap(err))
	}
	return out.Body, aws.ToInt64(out.ContentLength), nil
}

func (s *Store) Stat(ctx context.Context, digest string) (int64, error) {
	key, err := s.key(digest)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	out, err := s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.Bucket, Key: &key})
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", digest, s.wrap(err))
	}
	return aws.ToInt64(out.ContentLength), nil
}

func (s *Store) Delete(ctx context.Context, digest string) error {
	key, err := s.key(digest)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	if _, err := s.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.Bucket, Key: &key}); err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, s.wrap(err))
	}
	return nil
}

func (s *Store) List(ctx context.Context) ([]registry.BlobInfo, error) {
	prefix, _ := s.key(strings.Repeat("0", 64))
	prefix = strings.TrimSuffix(prefix, strings.Repeat("0", 64))
	var out []registry.BlobInfo
	p := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: &prefix})
	for p.HasMorePages() {
		cctx, cancel := context.WithTimeout(ctx, s.Timeout)
		page, err := p.NextPage(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list blobs in %s: %w", s, s.wrap(err))
		}
		for _, o := range page.Contents {
			d := strings.TrimPrefix(aws.ToString(o.Key), prefix)
			if registry.CheckDigest(d) == nil {
				out = append(out, registry.BlobInfo{Digest: d, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)})
			}
		}
	}
	return out, nil
}

var _ registry.ObjectStore = (*Store)(nil)

func (s *Store) objectKey(key string) (string, error) {
	if err := registry.CheckObjectKey(key); err != nil {
		return "", err
	}
	if s.Prefix != "" {
		key = s.Prefix + "/" + key
	}
	return key, nil
}

// PutObject uploads with its sha256 stated and If-None-Match: *, so S3 stores
// the whole object or nothing and never replaces one.
func (s *Store) PutObject(ctx context.Context, key string, body []byte) error {
	k, err := s.objectKey(key)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	_, err = s.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.Bucket, Key: &k, Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		IfNoneMatch:    aws.String("*"),
		ContentType:    aws.String("application/octet-stream"),
	})
	if isPreconditionFailed(err) {
		return fmt.Errorf("put object %s: %w: already stored", key, registry.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("put object %s: %w", key, s.wrap(err))
	}
	return nil
}

func (s *Store) GetObject(ctx context.Context, key string) ([]byte, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return nil, err
	}
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: &k})
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", key, s.wrap(err))
	}
	defer out.Body.Close()
	return registry.ReadObject(out.Body, key)
}

func (s *Store) ListObjects(ctx context.Context, prefix string) ([]registry.ObjectInfo, error) {
	full, err := s.objectKey(prefix)
	if err != nil {
		return nil, err
	}
	strip := ""
	if s.Prefix != "" {
		strip = s.Prefix + "/"
	}
	var out []registry.ObjectInfo
	p := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: &full})
	for p.HasMorePages() {
		cctx, cancel := context.WithTimeout(ctx, s.Timeout)
		page, err := p.NextPage(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list objects %s in %s: %w", prefix, s, s.wrap(err))
		}
		for _, o := range page.Contents {
			out = append(out, registry.ObjectInfo{Key: strings.TrimPrefix(aws.ToString(o.Key), strip), Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}
