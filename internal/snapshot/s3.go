package snapshot

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// S3Scheme is the URL scheme of an S3 snapshot location:
// "s3://bucket/prefix".
const S3Scheme = "s3://"

// DefaultS3PartSize is the part size of multipart uploads when
// S3Options.PartSize is 0: 16 MiB. A Put holds one part in memory; objects
// up to this size are uploaded with one PUT. With 10,000 parts at most (S3's
// limit) it bounds an object, i.e. one partition's SST, to 160 GiB.
const DefaultS3PartSize = 16 << 20

// MinS3PartSize is S3's smallest part size (every part but the last).
const MinS3PartSize = 5 << 20

// maxS3Parts is S3's limit on the parts of one multipart upload.
const maxS3Parts = 10000

// S3Options configures an S3Backend. Only Bucket is required; Endpoint,
// Region and the credentials normally come from the environment through
// S3OptionsFromEnv, never from the feature file.
type S3Options struct {
	// Bucket holds the snapshots. It must exist, except for a writer (see
	// NewS3Backend's create).
	Bucket string
	// Prefix is prepended to every object name, followed by "/": snapshots
	// of several deployments can share a bucket. "" uses the bucket's root.
	Prefix string
	// Endpoint is the S3 API's URL, "http://host:port" or
	// "https://host[:port]"; "" means AWS S3 (https://s3.amazonaws.com).
	Endpoint string
	// Region is the bucket's region; "" lets the client find out (AWS) or
	// use us-east-1 (other servers).
	Region string
	// AccessKeyID, SecretAccessKey and SessionToken are static credentials.
	// When AccessKeyID is empty the shared credentials file is read
	// (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials, profile
	// AWS_PROFILE); NewS3Backend fails when neither gives a key.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// PathStyle forces path-style requests ("host/bucket/key") when true
	// and virtual-hosted ones ("bucket.host/key") when false; nil picks per
	// endpoint (virtual-hosted for AWS, path-style for IP addresses and
	// most self-hosted servers).
	PathStyle *bool
	// CABundle is a PEM file of CA certificates trusted for an https
	// Endpoint, in addition to the system's; "" trusts the system's only.
	CABundle string
	// PartSize is the multipart part size in bytes: DefaultS3PartSize when
	// 0, at least MinS3PartSize. Each Put buffers one part in memory.
	PartSize int64
	// MaxRetries bounds the retries of one request (the client's default,
	// 10, with exponential back-off, when 0).
	MaxRetries int
}

// ParseS3URL splits "s3://bucket/prefix" into the bucket and the prefix
// (without leading or trailing slashes; "" for "s3://bucket").
func ParseS3URL(raw string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(raw, S3Scheme)
	if !ok {
		return "", "", fmt.Errorf("snapshot location %q: want s3://bucket[/prefix]", raw)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return "", "", fmt.Errorf("snapshot location %q: bucket %q: %w", raw, bucket, err)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		for _, el := range strings.Split(prefix, "/") {
			if el == "" || el == "." || el == ".." {
				return "", "", fmt.Errorf("snapshot location %q: invalid prefix %q (empty, '.' or '..' element)", raw, prefix)
			}
		}
	}
	return bucket, prefix, nil
}

// The environment variables S3OptionsFromEnv reads: the AWS SDKs' and CLI's
// names, so a pod or shell set up for them works unchanged.
const (
	EnvS3EndpointURL     = "AWS_ENDPOINT_URL_S3" // wins over AWS_ENDPOINT_URL
	EnvEndpointURL       = "AWS_ENDPOINT_URL"
	EnvRegion            = "AWS_REGION" // then AWS_DEFAULT_REGION
	EnvDefaultRegion     = "AWS_DEFAULT_REGION"
	EnvAccessKeyID       = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey   = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken      = "AWS_SESSION_TOKEN"
	EnvCABundle          = "AWS_CA_BUNDLE"
	EnvS3UsePathStyle    = "AWS_S3_USE_PATH_STYLE" // "true" or "false"; unset: per endpoint
	EnvS3PartSizeMiB     = "FEATUREPIPE_S3_PART_SIZE_MIB"
	envSharedCredentials = "AWS_SHARED_CREDENTIALS_FILE"
)

// S3OptionsFromEnv returns the options for location "s3://bucket/prefix"
// with the endpoint, region, credentials, path style, CA bundle and part
// size read through getenv (os.Getenv in production) from the variables
// named by the Env* constants.
func S3OptionsFromEnv(location string, getenv func(string) string) (S3Options, error) {
	bucket, prefix, err := ParseS3URL(location)
	if err != nil {
		return S3Options{}, err
	}
	o := S3Options{
		Bucket:          bucket,
		Prefix:          prefix,
		Endpoint:        cmpOr(getenv(EnvS3EndpointURL), getenv(EnvEndpointURL)),
		Region:          cmpOr(getenv(EnvRegion), getenv(EnvDefaultRegion)),
		AccessKeyID:     getenv(EnvAccessKeyID),
		SecretAccessKey: getenv(EnvSecretAccessKey),
		SessionToken:    getenv(EnvSessionToken),
		CABundle:        getenv(EnvCABundle),
	}
	if v := getenv(EnvS3UsePathStyle); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return S3Options{}, fmt.Errorf("%s=%q: want true or false", EnvS3UsePathStyle, v)
		}
		o.PathStyle = &b
	}
	if v := getenv(EnvS3PartSizeMiB); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < MinS3PartSize>>20 || n > 5<<10 {
			return S3Options{}, fmt.Errorf("%s=%q: want a whole number of MiB from %d to 5120", EnvS3PartSizeMiB, v, MinS3PartSize>>20)
		}
		o.PartSize = n << 20
	}
	return o, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// S3Backend is a Backend on an S3-compatible bucket (AWS S3, SeaweedFS,
// versitygw, Ceph RGW, ...), so that workers and lookup replicas on
// different machines share snapshots.
//
// Put uploads an object of up to PartSize bytes with one PUT and a larger
// one as a multipart upload; either way S3 makes the object visible only
// once complete, which is the atomicity Store relies on. Every upload
// request carries the MD5 (Content-MD5) and SHA-256 (signed) of its body,
// a part's for multipart, which the server checks, so a body damaged in
// transit is refused rather than stored. A failed or cancelled Put aborts its multipart upload; the upload
// of a process killed mid-way stays behind on the server, invisible to
// List and Get, until AbortIncompleteUploads (called by Store.Prune) or a
// bucket lifecycle rule removes it.
//
// Costs: Put one request per part plus two; Get one request, streamed;
// List one request per 1,000 objects; Delete one request.
type S3Backend struct {
	core     minio.Core
	bucket   string
	prefix   string // "" or "<prefix>/"
	partSize int64
}

var _ Backend = (*S3Backend)(nil)

// NewS3Backend connects to the bucket of o and checks that it exists; with
// create (the writer: a worker) a missing bucket is created, otherwise it is
// an error naming the bucket, so that a typo is not a silent "no snapshots".
// It makes one or two requests.
func NewS3Backend(ctx context.Context, o S3Options, create bool) (*S3Backend, error) {
	if err := s3utils.CheckValidBucketNameStrict(o.Bucket); err != nil {
		return nil, fmt.Errorf("snapshot: s3 bucket %q: %w", o.Bucket, err)
	}
	partSize := o.PartSize
	switch {
	case partSize == 0:
		partSize = DefaultS3PartSize
	case partSize < MinS3PartSize:
		return nil, fmt.Errorf("snapshot: s3 part size %d: less than S3's minimum of %d bytes", partSize, MinS3PartSize)
	}
	endpoint := o.Endpoint
	if endpoint == "" {
		endpoint = "https://s3.amazonaws.com"
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("snapshot: s3 endpoint %q: want http://host[:port] or https://host[:port] (set %s)", o.Endpoint, EnvEndpointURL)
	}
	creds, err := s3Credentials(o)
	if err != nil {
		return nil, err
	}
	transport, err := s3Transport(o.CABundle)
	if err != nil {
		return nil, err
	}
	lookup := minio.BucketLookupAuto
	if o.PathStyle != nil {
		lookup = minio.BucketLookupDNS
		if *o.PathStyle {
			lookup = minio.BucketLookupPath
		}
	}
	cl, err := minio.New(u.Host, &minio.Options{
		Creds:        creds,
		Secure:       u.Scheme == "https",
		Region:       o.Region,
		BucketLookup: lookup,
		Transport:    transport,
		MaxRetries:   o.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot: s3 endpoint %s: %w", endpoint, err)
	}
	b := &S3Backend{core: minio.Core{Client: cl}, bucket: o.Bucket, partSize: partSize}
	if o.Prefix != "" {
		b.prefix = strings.Trim(o.Prefix, "/") + "/"
	}
	ok, err := cl.BucketExists(ctx, o.Bucket)
	if err != nil {
		return nil, fmt.Errorf("snapshot: s3 bucket %s at %s: %w", o.Bucket, endpoint, err)
	}
	if !ok {
		if !create {
			return nil, fmt.Errorf("snapshot: s3 bucket %s at %s: %w (a worker with --snapshots creates it)", o.Bucket, endpoint, ErrNotExist)
		}
		err := cl.MakeBucket(ctx, o.Bucket, minio.MakeBucketOptions{Region: o.Region})
		if err != nil && !isS3Code(err, "BucketAlreadyOwnedByYou", "BucketAlreadyExists") {
			return nil, fmt.Errorf("snapshot: create s3 bucket %s at %s: %w", o.Bucket, endpoint, err)
		}
	}
	return b, nil
}

func s3Credentials(o S3Options) (*credentials.Credentials, error) {
	if o.AccessKeyID != "" || o.SecretAccessKey != "" {
		if o.AccessKeyID == "" || o.SecretAccessKey == "" {
			return nil, fmt.Errorf("snapshot: s3 credentials: set both %s and %s", EnvAccessKeyID, EnvSecretAccessKey)
		}
		return credentials.NewStaticV4(o.AccessKeyID, o.SecretAccessKey, o.SessionToken), nil
	}
	creds := credentials.NewFileAWSCredentials("", "")
	v, err := creds.Get()
	if err != nil || v.AccessKeyID == "" {
		return nil, fmt.Errorf("snapshot: no s3 credentials: set %s and %s (or a shared credentials file, %s)", EnvAccessKeyID, EnvSecretAccessKey, envSharedCredentials)
	}
	return creds, nil
}

func s3Transport(caBundle string) (http.RoundTripper, error) {
	t, err := minio.DefaultTransport(true)
	if err != nil {
		return nil, fmt.Errorf("snapshot: s3 transport: %w", err)
	}
	if caBundle == "" {
		return t, nil
	}
	pem, err := os.ReadFile(caBundle)
	if err != nil {
		return nil, fmt.Errorf("snapshot: s3 CA bundle (%s): %w", EnvCABundle, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("snapshot: s3 CA bundle %s (%s): no PEM certificate in it", caBundle, EnvCABundle)
	}
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t, nil
}

// Location is "s3://bucket/prefix" ("s3://bucket" without a prefix), for
// messages.
func (b *S3Backend) Location() string {
	if b.prefix == "" {
		return S3Scheme + b.bucket
	}
	return S3Scheme + b.bucket + "/" + strings.TrimSuffix(b.prefix, "/")
}

func (b *S3Backend) key(name string) string { return b.prefix + name }

// Put uploads r as name. It reads r up to PartSize bytes: if r ends there
// the object goes up in one PUT, otherwise as a multipart upload of
// PartSize parts, completed once r is exhausted. If r fails or ctx is
// cancelled nothing becomes visible under name (a previous version stays)
// and a started multipart upload is aborted.
func (b *S3Backend) Put(ctx context.Context, name string, r io.Reader) (err error) {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("snapshot: put %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("snapshot: put %s to %s: %w", name, b.Location(), err)
		}
	}()
	r = ctxReader{ctx, r}
	// Grows as needed: a small object (a manifest) costs its size, not a
	// whole part.
	var first bytes.Buffer
	switch _, rerr := io.CopyN(&first, r, b.partSize); rerr {
	case io.EOF:
		md5b64, sha := sums(first.Bytes())
		_, err := b.core.PutObject(ctx, b.bucket, b.key(name), bytes.NewReader(first.Bytes()), int64(first.Len()), md5b64, sha,
			minio.PutObjectOptions{ContentType: "application/octet-stream"})
		return err
	case nil:
		return b.putMultipart(ctx, name, r, first.Bytes())
	default:
		return rerr
	}
}

// putMultipart uploads buf, which is full, and the rest of r as a multipart
// upload, aborting it on any failure.
func (b *S3Backend) putMultipart(ctx context.Context, name string, r io.Reader, buf []byte) (err error) {
	key := b.key(name)
	id, err := b.core.NewMultipartUpload(ctx, b.bucket, key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("start multipart upload: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		// Abort even when ctx is cancelled: the parts would otherwise be
		// stored (and billed) until AbortIncompleteUploads.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if aerr := b.core.AbortMultipartUpload(actx, b.bucket, key, id); aerr != nil && !isS3Code(aerr, "NoSuchUpload") {
			err = fmt.Errorf("%w (and aborting multipart upload %s failed: %v)", err, id, aerr)
		}
	}()
	var parts []minio.CompletePart
	n, last := len(buf), false
	for part := 1; ; part++ {
		if part > maxS3Parts {
			return fmt.Errorf("larger than %d parts of %d bytes (raise the part size)", maxS3Parts, len(buf))
		}
		md5b64, sha := sums(buf[:n])
		p, err := b.core.PutObjectPart(ctx, b.bucket, key, id, part, bytes.NewReader(buf[:n]), int64(n),
			minio.PutObjectPartOptions{Md5Base64: md5b64, Sha256Hex: sha})
		if err != nil {
			return fmt.Errorf("upload part %d: %w", part, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: part, ETag: p.ETag})
		if last {
			break
		}
		var rerr error
		n, rerr = io.ReadFull(r, buf)
		if rerr == io.EOF {
			break // r ended at a part boundary
		}
		if rerr == io.ErrUnexpectedEOF {
			last = true // one more, short part
		} else if rerr != nil {
			return rerr
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := b.core.CompleteMultipartUpload(ctx, b.bucket, key, id, parts, minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("complete multipart upload: %w", err)
	}
	return nil
}

// sums returns the base64 MD5 and hex SHA-256 of p, sent with a request
// so that the server refuses a body damaged in transit.
func sums(p []byte) (md5b64, sha256hex string) {
	m := md5.Sum(p)
	s := sha256.Sum256(p)
	return base64.StdEncoding.EncodeToString(m[:]), hex.EncodeToString(s[:])
}

// Get opens name for reading, streaming it from the server. The caller
// must Close it. An absent name returns an error matching ErrNotExist.
func (b *S3Backend) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("snapshot: get %s: %w", name, err)
	}
	r, _, _, err := b.core.GetObject(ctx, b.bucket, b.key(name), minio.GetObjectOptions{})
	if isS3Code(err, "NoSuchKey") {
		return nil, fmt.Errorf("snapshot: get %s from %s: %w", name, b.Location(), ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: get %s from %s: %w", name, b.Location(), err)
	}
	return r, nil
}

// List returns the names of the objects starting with prefix, sorted.
// Objects whose names are not valid object names (a "directory" marker,
// an element starting with '.') are not ours and are skipped.
func (b *S3Backend) List(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	for obj := range b.core.Client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.key(prefix), Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("snapshot: list %q in %s: %w", prefix, b.Location(), obj.Err)
		}
		name, ok := strings.CutPrefix(obj.Key, b.prefix)
		if !ok || checkName(name) != nil {
			continue
		}
		names = append(names, name)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("snapshot: list %q in %s: %w", prefix, b.Location(), err)
	}
	slices.Sort(names)
	return names, nil
}

// Delete removes name; an absent name is not an error.
func (b *S3Backend) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := b.core.RemoveObject(ctx, b.bucket, b.key(name), minio.RemoveObjectOptions{})
	if err != nil && !isS3Code(err, "NoSuchKey") {
		return fmt.Errorf("snapshot: delete %s from %s: %w", name, b.Location(), err)
	}
	return nil
}

// AbortIncompleteUploads aborts the multipart uploads under the backend's
// prefix that were started before before, and returns the object names
// they were for. Those are the leftovers of Puts interrupted by a crash or
// kill -9 (a Put that fails in-process aborts its own upload); they are
// invisible to List and Get but take space. Store.Prune calls it with the
// same 24-hour grace as for snapshots without a manifest, so an upload in
// progress is never aborted.
func (b *S3Backend) AbortIncompleteUploads(ctx context.Context, before time.Time) ([]string, error) {
	var aborted []string
	for up := range b.core.ListIncompleteUploads(ctx, b.bucket, b.prefix, true) {
		if up.Err != nil {
			return aborted, fmt.Errorf("snapshot: list incomplete uploads in %s: %w", b.Location(), up.Err)
		}
		if !up.Initiated.Before(before) {
			continue
		}
		if err := b.core.AbortMultipartUpload(ctx, b.bucket, up.Key, up.UploadID); err != nil && !isS3Code(err, "NoSuchUpload") {
			return aborted, fmt.Errorf("snapshot: abort upload of %s in %s: %w", up.Key, b.Location(), err)
		}
		aborted = append(aborted, strings.TrimPrefix(up.Key, b.prefix))
	}
	return aborted, ctx.Err()
}

// isS3Code reports whether err is an S3 error response with one of codes.
func isS3Code(err error, codes ...string) bool {
	if err == nil {
		return false
	}
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return false
	}
	return slices.Contains(codes, er.Code)
}
