package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
)

// Conn is how featurepipe reaches its Kafka cluster: the seed brokers and
// the security of the connection (kafka.security of the feature file). The
// zero Security is plaintext without authentication. Every client
// featurepipe creates is built from a Conn (BaseOpts, NewClient), so TLS and
// SASL apply to all of them alike.
type Conn struct {
	Brokers  []string
	Security config.Security
}

// ConnOf is the connection a component with brokers and a feature file
// uses: cfg's kafka.security (plaintext when cfg is nil).
func ConnOf(brokers []string, cfg *config.File) Conn {
	c := Conn{Brokers: brokers}
	if cfg != nil {
		c.Security = cfg.Kafka.Security
	}
	return c
}

// NewClient is kgo.NewClient over BaseOpts(c, clientID, log) followed by
// extra.
func NewClient(c Conn, clientID string, log *zap.Logger, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := BaseOpts(c, clientID, log)
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(opts, extra...)...)
}

// DefaultCheckTimeout bounds Check when its context has no earlier deadline.
const DefaultCheckTimeout = 15 * time.Second

// Check connects to c's brokers the way every client will (TLS, SASL) and
// issues one Metadata request naming no topic, so that a wrong password, an
// untrusted certificate or a listener of another protocol is reported at
// start-up, once and clearly, instead of by clients retrying in the
// background. It gives up after DefaultCheckTimeout (or ctx's deadline, if
// earlier). A rejected credential or certificate wraps ErrAuthentication
// and reads, for example,
//
//	SASL authentication failed for user "featurepipe" (SCRAM-SHA-512) at 10.0.0.7:9096: ...
//
// Cost: one connection and one round trip; no topic is created.
func Check(ctx context.Context, c Conn) error {
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, DefaultCheckTimeout)
	defer cancel()
	// No retries inside kgo: this loop sees every error and stops at the
	// first that retrying cannot cure.
	var rejected saslRejected
	cl, err := NewClient(c, "featurepipe-check", nil, kgo.RequestRetries(0), kgo.WithHooks(&rejected))
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{} // none (nil would be all)
	var last error
	for {
		_, err := req.RequestWith(ctx, cl)
		if err != nil && c.Security.SASL != nil && rejected.Load() && !errors.Is(err, kerr.SaslAuthenticationFailed) {
			// Some brokers (kfake among them) close the connection
			// instead of answering with SASL_AUTHENTICATION_FAILED.
			err = fmt.Errorf("%w: the broker closed the connection in answer to the credentials (%w)", kerr.SaslAuthenticationFailed, err)
		}
		switch {
		case err == nil:
			return nil
		case definitive(err):
			return describe(c, err, 0)
		case last == nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
			last = err // a failed dial: the brokers may be starting
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return describe(c, last, time.Since(began))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// definitive reports whether err will not go away by retrying: a rejected
// credential or certificate, or a protocol mismatch.
func definitive(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var verifyErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	return errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) ||
		errors.Is(err, kerr.IllegalSaslState) || errors.Is(err, kerr.ClusterAuthorizationFailed) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &verifyErr) || errors.As(err, &recordErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || tlsAnswer(err) || tlsAlert(err) != nil
}

// tlsAlert returns the TLS alert the broker sent (crypto/tls reports it as
// a net.OpError with Op "remote error"), or nil: it refused the handshake,
// for example for want of a client certificate.
func tlsAlert(err error) *net.OpError {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return op
	}
	return nil
}

// tlsAnswer reports whether a plaintext client read a TLS record: kgo says
// so only in its message ("invalid large response size ... appear to be a
// tls alert record"), which is matched here.
func tlsAnswer(err error) bool {
	return strings.Contains(err.Error(), "tls alert record")
}

// describe turns a failed Check into a message that says what to fix;
// waited is how long Check tried before giving up without a definitive
// answer (0: it had one).
func describe(c Conn, err error, waited time.Duration) error {
	brokers := strings.Join(c.Brokers, ",")
	sec := c.Security
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var verifyErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		s := sec.SASL
		if s == nil {
			return authErrorf(err, "the brokers at %s ask for SASL authentication but kafka.security.sasl is not set: %v", brokers, err)
		}
		if s.Mechanism == config.SASLOAuthBearer {
			return authErrorf(err, "SASL authentication failed (OAUTHBEARER, token from %s) at %s: %v; check the token (%s)", s.TokenFile, brokers, err, s.At)
		}
		src := "the environment variable " + s.PasswordEnv
		if s.PasswordFile != "" {
			src = "the file " + s.PasswordFile
		}
		return authErrorf(err, "SASL authentication failed for user %q (%s) at %s: %v; check the user name and the password in %s (%s)",
			s.Username, s.Mechanism, brokers, err, src, s.At)
	case errors.Is(err, kerr.UnsupportedSaslMechanism) && sec.SASL != nil:
		return authErrorf(err, "the brokers at %s do not enable SASL mechanism %s: %v", brokers, sec.SASL.Mechanism, err)
	case errors.As(err, &hostErr):
		return authErrorf(err, "TLS: %v; connect by a name the broker certificate carries, or set kafka.security.tls.server_name to one", err)
	case errors.As(err, &unknownCA), errors.As(err, &verifyErr):
		at := "kafka.security.tls.ca_file"
		if sec.TLS != nil {
			at = sec.TLS.At + ".ca_file"
		}
		return authErrorf(err, "TLS: the certificate of the broker at %s is not signed by a trusted authority (%v); set %s to the CA that signed it", brokers, err, at)
	case tlsAlert(err) != nil:
		hint := "check kafka.security.tls against the listener's TLS settings"
		if strings.Contains(err.Error(), "certificate") {
			hint = "the brokers require a client certificate they trust: set kafka.security.tls.cert_file and key_file"
			if sec.TLS != nil && sec.TLS.CertFile != "" {
				hint = "the brokers do not accept the client certificate " + sec.TLS.CertFile
			}
		}
		return authErrorf(err, "TLS: the broker at %s refused the handshake (%v): %s", brokers, tlsAlert(err), hint)
	case tlsAnswer(err):
		return fmt.Errorf("kafka at %s answered in TLS: this listener needs kafka.security.tls (%v)", brokers, err)
	case errors.As(err, &recordErr):
		return fmt.Errorf("kafka at %s does not speak TLS (%v): remove kafka.security.tls, or use the brokers' SSL/SASL_SSL listener", brokers, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		hint := "does this listener need TLS or SASL (kafka.security), or is it another protocol?"
		if sec.TLS != nil || sec.SASL != nil {
			hint = "does this listener expect the kafka.security given (TLS: " + yesNo(sec.TLS != nil) + ", SASL: " + yesNo(sec.SASL != nil) + ")?"
		}
		return fmt.Errorf("kafka at %s closed the connection during the handshake (%v): %s", brokers, err, hint)
	}
	if waited > 0 {
		return fmt.Errorf("kafka at %s did not answer within %s: %w", brokers, waited.Round(100*time.Millisecond), err)
	}
	return fmt.Errorf("kafka at %s refused featurepipe: %w", brokers, err)
}

// authError is a rejected credential or certificate: it matches
// ErrAuthentication and unwraps to the client's error.
type authError struct {
	msg   string
	cause error
}

func (e *authError) Error() string   { return e.msg }
func (e *authError) Unwrap() []error { return []error{ErrAuthentication, e.cause} }

func authErrorf(cause error, format string, args ...any) error {
	return &authError{msg: fmt.Sprintf(format, args...), cause: cause}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// saslRejected records whether a connection died reading the answer to a
// SASLAuthenticate request: the broker hung up on the credentials.
type saslRejected struct{ atomic.Bool }

func (h *saslRejected) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err != nil && key == int16(kmsg.SASLAuthenticate) {
		h.Store(true)
	}
}
