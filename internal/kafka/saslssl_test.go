package kafka_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

// TestApacheKafkaSASLSSL connects to the SASL_SSL listener of the Apache
// Kafka broker run.sh starts with every mechanism it enables (SCRAM-SHA-512,
// SCRAM-SHA-256, PLAIN, and OAUTHBEARER with an unsigned JWT, which the
// broker's default validator accepts), and checks that a wrong password, an
// unknown user and a plaintext client each fail fast and clearly. Skipped
// without KAFKA_SASL_SSL_BROKERS, except under make test-kafka.
func TestApacheKafkaSASLSSL(t *testing.T) {
	k := testkit.SASLSSL(t)
	t.Setenv("FP_TEST_KAFKA_PASSWORD", k.Password)
	t.Setenv("FP_TEST_WRONG_PASSWORD", k.Password+"x")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(unsignedJWT(k.Username, time.Hour)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsCA := &config.TLS{CAFile: k.CAFile, At: tlsAt}
	user := func(mech, name, env string) *config.SASL {
		return &config.SASL{Mechanism: mech, Username: name, PasswordEnv: env, At: saslAt}
	}
	check := func(t *testing.T, sec config.Security) (error, time.Duration) {
		start := time.Now()
		err := kafka.Check(context.Background(), kafka.Conn{Brokers: k.Brokers, Security: sec})
		return err, time.Since(start)
	}
	for _, sasl := range []*config.SASL{
		user(config.SASLScramSHA512, k.Username, "FP_TEST_KAFKA_PASSWORD"),
		user(config.SASLScramSHA256, k.Username, "FP_TEST_KAFKA_PASSWORD"),
		user(config.SASLPlain, k.Username, "FP_TEST_KAFKA_PASSWORD"),
		{Mechanism: config.SASLOAuthBearer, TokenFile: tokenFile, At: saslAt},
	} {
		t.Run(sasl.Mechanism+" connects", func(t *testing.T) {
			if err, _ := check(t, config.Security{TLS: tlsCA, SASL: sasl}); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		sec  config.Security
		auth bool
		want string
	}{
		{"wrong password", config.Security{TLS: tlsCA, SASL: user(config.SASLScramSHA512, k.Username, "FP_TEST_WRONG_PASSWORD")}, true,
			fmt.Sprintf("SASL authentication failed for user %q (SCRAM-SHA-512) at %s", k.Username, k.Brokers[0])},
		{"unknown user", config.Security{TLS: tlsCA, SASL: user(config.SASLScramSHA256, "nobody", "FP_TEST_KAFKA_PASSWORD")}, true,
			`SASL authentication failed for user "nobody" (SCRAM-SHA-256)`},
		{"wrong PLAIN password", config.Security{TLS: tlsCA, SASL: user(config.SASLPlain, k.Username, "FP_TEST_WRONG_PASSWORD")}, true,
			fmt.Sprintf("SASL authentication failed for user %q (PLAIN)", k.Username)},
		{"no TLS", config.Security{SASL: user(config.SASLScramSHA512, k.Username, "FP_TEST_KAFKA_PASSWORD")}, false,
			"answered in TLS: this listener needs kafka.security.tls"},
		{"TLS without SASL", config.Security{TLS: tlsCA}, false,
			"closed the connection during the handshake"},
		{"system roots do not trust the test CA", config.Security{TLS: &config.TLS{At: tlsAt}, SASL: user(config.SASLScramSHA512, k.Username, "FP_TEST_KAFKA_PASSWORD")}, true,
			"is not signed by a trusted authority"},
	} {
		t.Run(tc.name+" fails fast", func(t *testing.T) {
			err, took := check(t, tc.sec)
			if err == nil {
				t.Fatal("Check passed")
			}
			t.Logf("after %s: %v", took.Round(time.Millisecond), err)
			if took >= kafka.DefaultCheckTimeout {
				t.Errorf("took %s: retried until the timeout instead of failing fast", took)
			}
			if errors.Is(err, kafka.ErrAuthentication) != tc.auth || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant one saying %q (authentication error: %v)", err, tc.want, tc.auth)
			}
		})
	}
}

// unsignedJWT is an unsecured JWS ("alg":"none") for sub, the token
// format of Kafka's default OAUTHBEARER validator (tests only).
func unsignedJWT(sub string, ttl time.Duration) string {
	enc := base64.RawURLEncoding.EncodeToString
	now := time.Now().Unix()
	return enc([]byte(`{"alg":"none"}`)) + "." +
		enc(fmt.Appendf(nil, `{"sub":%q,"iat":%d,"exp":%d}`, sub, now, now+int64(ttl.Seconds()))) + "."
}
