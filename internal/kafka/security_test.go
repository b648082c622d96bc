package kafka_test

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

const (
	tlsAt  = "features.yaml:3: kafka.security.tls"
	saslAt = "features.yaml:5: kafka.security.sasl"
)

// securedCluster is an embedded broker that takes only TLS connections
// (certificate of a throw-away CA) authenticated with SASL: user "fp" with
// password "s3cret" for SCRAM-SHA-512 and SCRAM-SHA-256, and "plain" /
// "p1ain" for PLAIN.
func securedCluster(t *testing.T) (brokers []string, ca *testkit.TLSFiles) {
	t.Helper()
	ca = testkit.WriteTLS(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(ca.Server), kfake.EnableSASL(),
		kfake.Superuser(config.SASLScramSHA512, "fp", "s3cret"),
		kfake.Superuser(config.SASLScramSHA256, "fp", "s3cret"),
		kfake.Superuser(config.SASLPlain, "plain", "p1ain"),
		kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs(), ca
}

// TestSecuredRoundTrip: with each SASL mechanism over TLS, Check passes
// and a client from NewClient produces a record another reads back.
func TestSecuredRoundTrip(t *testing.T) {
	brokers, ca := securedCluster(t)
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil { // the newline is dropped
		t.Fatal(err)
	}
	t.Setenv("FP_TEST_SCRAM_PASSWORD", "s3cret")
	t.Setenv("FP_TEST_PLAIN_PASSWORD", "p1ain")
	for _, tc := range []struct {
		name string
		sasl config.SASL
	}{
		{"SCRAM-SHA-512, password from the environment", config.SASL{Mechanism: config.SASLScramSHA512, Username: "fp", PasswordEnv: "FP_TEST_SCRAM_PASSWORD"}},
		{"SCRAM-SHA-256, password from a file", config.SASL{Mechanism: config.SASLScramSHA256, Username: "fp", PasswordFile: pwFile}},
		{"PLAIN", config.SASL{Mechanism: config.SASLPlain, Username: "plain", PasswordEnv: "FP_TEST_PLAIN_PASSWORD"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.sasl
			s.At = saslAt
			conn := kafka.Conn{Brokers: brokers, Security: config.Security{TLS: &config.TLS{CAFile: ca.CAFile, At: tlsAt}, SASL: &s}}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := kafka.Check(ctx, conn); err != nil {
				t.Fatalf("Check: %v", err)
			}
			topic := "secured-" + strings.NewReplacer(" ", "-", ",", "").Replace(strings.ToLower(tc.name))
			prod, err := kafka.NewClient(conn, "test-producer", nil, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte(tc.name)}).FirstErr(); err != nil {
				t.Fatalf("produce over TLS+SASL: %v", err)
			}
			cons, err := kafka.NewClient(conn, "test-consumer", nil, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			fs := cons.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				t.Fatalf("consume over TLS+SASL: %v", err)
			}
			if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != tc.name {
				t.Fatalf("read back %d records (%v), want the one produced", len(recs), recs)
			}
		})
	}
}

// TestCheckFailsFastAndSaysWhy: a wrong password, an untrusted CA, a wrong
// server name, an unknown mechanism and a plaintext client of the TLS
// listener each fail Check well before its timeout (no retrying), with a
// message that says what to fix.
func TestCheckFailsFastAndSaysWhy(t *testing.T) {
	brokers, ca := securedCluster(t)
	other := testkit.WriteTLS(t) // another CA: not the one that signed the broker
	t.Setenv("FP_TEST_WRONG", "not-the-password")
	t.Setenv("FP_TEST_RIGHT", "s3cret")
	scram := func(env string) *config.SASL {
		return &config.SASL{Mechanism: config.SASLScramSHA512, Username: "fp", PasswordEnv: env, At: saslAt}
	}
	trusted := &config.TLS{CAFile: ca.CAFile, At: tlsAt}
	for _, tc := range []struct {
		name     string
		sec      config.Security
		auth     bool // errors.Is(err, kafka.ErrAuthentication)
		contains []string
	}{
		{"wrong password", config.Security{TLS: trusted, SASL: scram("FP_TEST_WRONG")}, true,
			[]string{`SASL authentication failed for user "fp" (SCRAM-SHA-512) at ` + brokers[0], "the password in the environment variable FP_TEST_WRONG", saslAt}},
		{"unknown user", config.Security{TLS: trusted, SASL: &config.SASL{Mechanism: config.SASLScramSHA256, Username: "nobody", PasswordEnv: "FP_TEST_RIGHT", At: saslAt}}, true,
			[]string{`SASL authentication failed for user "nobody" (SCRAM-SHA-256)`}},
		{"untrusted CA", config.Security{TLS: &config.TLS{CAFile: other.CAFile, At: tlsAt}, SASL: scram("FP_TEST_RIGHT")}, true,
			[]string{"is not signed by a trusted authority", "set " + tlsAt + ".ca_file"}},
		{"wrong server name", config.Security{TLS: &config.TLS{CAFile: ca.CAFile, ServerName: "kafka.example.com", At: tlsAt}, SASL: scram("FP_TEST_RIGHT")}, true,
			[]string{"kafka.example.com", "server_name"}},
		{"plaintext client of the TLS listener", config.Security{SASL: scram("FP_TEST_RIGHT")}, false,
			[]string{"closed the connection during the handshake", "TLS: no, SASL: yes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := kafka.Check(context.Background(), kafka.Conn{Brokers: brokers, Security: tc.sec})
			took := time.Since(start)
			if err == nil {
				t.Fatal("Check passed")
			}
			if took >= kafka.DefaultCheckTimeout {
				t.Errorf("Check took %s: it retried until its timeout instead of failing fast (%v)", took, err)
			}
			if errors.Is(err, kafka.ErrAuthentication) != tc.auth {
				t.Errorf("errors.Is(err, ErrAuthentication) = %v, want %v: %v", !tc.auth, tc.auth, err)
			}
			for _, want := range tc.contains {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not say %q", err, want)
				}
			}
		})
	}
}

// TestSecretsAreReadWhenTheClientIsBuilt: a secret or certificate that
// cannot be read fails BaseOpts (hence every client) with the field at
// fault; nothing is dialed.
func TestSecretsAreReadWhenTheClientIsBuilt(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	notPEM := filepath.Join(dir, "ca.txt")
	for path, content := range map[string]string{empty: "\n", notPEM: "not a certificate"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.pem")
	t.Setenv("FP_TEST_EMPTY", "")
	for _, tc := range []struct {
		name string
		sec  config.Security
		want string
	}{
		{"unset environment variable", config.Security{SASL: &config.SASL{Mechanism: config.SASLPlain, Username: "u", PasswordEnv: "FP_TEST_UNSET_VARIABLE", At: saslAt}},
			saslAt + `: password_env: the environment variable FP_TEST_UNSET_VARIABLE that should hold the password of "u" is not set (or empty)`},
		{"empty environment variable", config.Security{SASL: &config.SASL{Mechanism: config.SASLPlain, Username: "u", PasswordEnv: "FP_TEST_EMPTY", At: saslAt}},
			"FP_TEST_EMPTY that should hold the password"},
		{"empty password file", config.Security{SASL: &config.SASL{Mechanism: config.SASLScramSHA256, Username: "u", PasswordFile: empty, At: saslAt}},
			saslAt + ": password_file: " + empty + " is empty"},
		{"missing token file", config.Security{SASL: &config.SASL{Mechanism: config.SASLOAuthBearer, TokenFile: missing, At: saslAt}},
			saslAt + ": token_file: open " + missing},
		{"missing CA file", config.Security{TLS: &config.TLS{CAFile: missing, At: tlsAt}},
			tlsAt + ": ca_file: open " + missing},
		{"CA file without a certificate", config.Security{TLS: &config.TLS{CAFile: notPEM, At: tlsAt}},
			tlsAt + ": ca_file: " + notPEM + " holds no PEM certificate"},
		{"client key missing", config.Security{TLS: &config.TLS{CertFile: notPEM, KeyFile: missing, At: tlsAt}},
			tlsAt + ": cert_file/key_file:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kafka.BaseOpts(kafka.Conn{Brokers: []string{"127.0.0.1:1"}, Security: tc.sec}, "test", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("BaseOpts: %v\nwant an error saying %q", err, tc.want)
			}
		})
	}
}

// OAUTHBEARER sends the token file's content, read again on every
// authentication: a token rotated in place reaches the next connection.
func TestOAuthBearerRereadsTheTokenFile(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := kafka.Conn{Brokers: []string{"127.0.0.1:1"}, Security: config.Security{
		SASL: &config.SASL{Mechanism: config.SASLOAuthBearer, TokenFile: tokenFile, At: saslAt}}}
	cl, err := kafka.NewClient(conn, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	mechs, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
	if len(mechs) != 1 || mechs[0].Name() != "OAUTHBEARER" {
		t.Fatalf("SASL mechanisms %v, want OAUTHBEARER", mechs)
	}
	first := func() string {
		_, msg, err := mechs[0].Authenticate(context.Background(), "127.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	if got := first(); !strings.Contains(got, "auth=Bearer first-token\x01") {
		t.Fatalf("first message %q does not carry the token", got)
	}
	if err := os.WriteFile(tokenFile, []byte("rotated-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := first(); !strings.Contains(got, "auth=Bearer rotated-token\x01") {
		t.Fatalf("after rotation, message %q does not carry the new token", got)
	}
}

// Brokers that cannot be reached are retried until the context's deadline
// (they may be starting), then reported with the last dial error.
func TestCheckGivesUpOnUnreachableBrokers(t *testing.T) {
	ca := testkit.WriteTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	began := time.Now()
	err := kafka.Check(ctx, kafka.Conn{Brokers: []string{"127.0.0.1:1"}, Security: config.Security{TLS: &config.TLS{CAFile: ca.CAFile, At: tlsAt}}})
	if took := time.Since(began); took < 900*time.Millisecond || took > 10*time.Second {
		t.Errorf("Check returned after %s; want it to retry until the 1s deadline", took)
	}
	// The last dial error is "connection refused", or "i/o timeout" when
	// the deadline cut a dial short on a loaded machine.
	if err == nil || !strings.Contains(err.Error(), "kafka at 127.0.0.1:1 did not answer within ") || !strings.Contains(err.Error(), "dial tcp 127.0.0.1:1") ||
		errors.Is(err, kafka.ErrAuthentication) {
		t.Fatalf("Check: %v; want a timeout naming the failed dial", err)
	}
}

// Mutual TLS: a broker that requires client certificates takes a client
// with cert_file/key_file and refuses, fast, one without.
func TestMutualTLS(t *testing.T) {
	ca := testkit.WriteTLS(t)
	server := ca.Server.Clone()
	server.ClientAuth = tls.RequireAndVerifyClientCert
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(server))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	with := config.Security{TLS: &config.TLS{CAFile: ca.CAFile, CertFile: ca.CertFile, KeyFile: ca.KeyFile, At: tlsAt}}
	if err := kafka.Check(context.Background(), kafka.Conn{Brokers: c.ListenAddrs(), Security: with}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	began := time.Now()
	err = kafka.Check(context.Background(), kafka.Conn{Brokers: c.ListenAddrs(), Security: config.Security{TLS: &config.TLS{CAFile: ca.CAFile, At: tlsAt}}})
	t.Logf("without: %v", err)
	if err == nil || time.Since(began) >= kafka.DefaultCheckTimeout || !errors.Is(err, kafka.ErrAuthentication) ||
		!strings.Contains(err.Error(), "refused the handshake (remote error: tls: certificate required): the brokers require a client certificate they trust: set kafka.security.tls.cert_file and key_file") {
		t.Fatalf("without a client certificate: %v after %s; want a fast refusal naming the certificate", err, time.Since(began))
	}
}
