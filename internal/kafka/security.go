package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/featurepipe/featurepipe/internal/config"
)

// securityOpts turns kafka.security into kgo options: DialTLSConfig for
// TLS, SASL for the mechanism. Every file and environment variable the
// block names is read here, once, so a missing or unreadable secret fails
// the client's construction with the field at fault rather than its first
// request. Passwords and tokens are read again on every authentication
// (a rotated Kubernetes secret reaches new connections without a restart);
// the TLS files are read once per client.
func securityOpts(s config.Security) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if s.TLS != nil {
		cfg, err := tlsConfig(s.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s.SASL != nil {
		m, err := saslMechanism(s.SASL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// tlsConfig builds the client TLS configuration: TLS 1.2 or later, the CA
// file's authorities (else the system's), the client certificate if given.
// With ServerName empty, kgo verifies each broker against the host it dials.
func tlsConfig(t *config.TLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: ca_file: %w", t.At, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: ca_file: %s holds no PEM certificate", t.At, t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: cert_file/key_file: %w", t.At, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// saslMechanism returns the franz-go mechanism for s. It reads the secret
// once now (to fail early) and again on every authentication.
func saslMechanism(s *config.SASL) (sasl.Mechanism, error) {
	if s.Mechanism == config.SASLOAuthBearer {
		token := func() (string, error) { return readSecretFile(s.At, "token_file", s.TokenFile) }
		if _, err := token(); err != nil {
			return nil, err
		}
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			tok, err := token()
			return oauth.Auth{Token: tok}, err
		}), nil
	}
	if _, err := password(s); err != nil {
		return nil, err
	}
	switch s.Mechanism {
	case config.SASLPlain:
		return plain.Plain(func(context.Context) (plain.Auth, error) {
			pw, err := password(s)
			return plain.Auth{User: s.Username, Pass: pw}, err
		}), nil
	case config.SASLScramSHA256, config.SASLScramSHA512:
		auth := func(context.Context) (scram.Auth, error) {
			pw, err := password(s)
			return scram.Auth{User: s.Username, Pass: pw}, err
		}
		if s.Mechanism == config.SASLScramSHA256 {
			return scram.Sha256(auth), nil
		}
		return scram.Sha512(auth), nil
	}
	return nil, fmt.Errorf("%s: mechanism: unsupported SASL mechanism %q", s.At, s.Mechanism)
}

// password reads the SASL password from its environment variable or file.
func password(s *config.SASL) (string, error) {
	if s.PasswordFile != "" {
		return readSecretFile(s.At, "password_file", s.PasswordFile)
	}
	pw, ok := os.LookupEnv(s.PasswordEnv)
	if !ok || pw == "" {
		return "", fmt.Errorf("%s: password_env: the environment variable %s that should hold the password of %q is not set (or empty)", s.At, s.PasswordEnv, s.Username)
	}
	return pw, nil
}

// readSecretFile reads a one-value secret file, dropping trailing line
// breaks (as `echo` and most secret stores leave them); an empty file is an
// error.
func readSecretFile(at, key, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %s: %w", at, key, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s: %s: %s is empty", at, key, path)
	}
	return v, nil
}

// ErrAuthentication is wrapped by Check's error when the brokers rejected
// featurepipe's SASL credentials or certificate.
var ErrAuthentication = errors.New("kafka authentication failed")
