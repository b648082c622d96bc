package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/kafka"
)

// TLSFiles are a throw-away certificate authority and a server certificate
// it signed, written as PEM files into a test's temporary directory.
type TLSFiles struct {
	CAFile   string // the CA certificate: what clients trust
	CertFile string // the server certificate
	KeyFile  string // its private key
	// Server serves CertFile (for an embedded broker's listener).
	Server *tls.Config
}

// WriteTLS makes a CA (named "featurepipe test CA") and a server
// certificate for hosts (DNS names or IP addresses; default 127.0.0.1 and
// localhost), valid for a day, with ECDSA P-256 keys. The certificate is
// also valid for client authentication, and Server.ClientCAs holds the CA:
// set Server.ClientAuth to require client certificates (mutual TLS).
func WriteTLS(t testing.TB, hosts ...string) *TLSFiles {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	dir := t.TempDir()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "featurepipe test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, // also a client certificate
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := &TLSFiles{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key")}
	for path, block := range map[string]*pem.Block{
		f.CAFile:   {Type: "CERTIFICATE", Bytes: caDER},
		f.CertFile: {Type: "CERTIFICATE", Bytes: der},
		f.KeyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	f.Server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	return f
}

// RequireSASLSSLEnv, set to 1, makes SASLSSL fail a test instead of
// skipping it when the SASL_SSL listener is not configured: `make
// test-kafka` sets it, so the secured round trip cannot silently not run.
const RequireSASLSSLEnv = "FEATUREPIPE_REQUIRE_SASL_SSL"

// SASLSSLKafka is the SASL_SSL listener of the Apache Kafka broker that
// deploy/kafka/run.sh starts: its address, the throw-away CA that signed
// its certificate, and the user created at format time (SCRAM-SHA-256,
// SCRAM-SHA-512 and PLAIN share it).
type SASLSSLKafka struct {
	Brokers  []string
	CAFile   string
	Username string
	Password string
}

// SASLSSL returns the listener run.sh printed (KAFKA_SASL_SSL_BROKERS,
// KAFKA_SASL_SSL_CA, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD). Without
// them the test is skipped, or fails when RequireSASLSSLEnv is 1.
func SASLSSL(t testing.TB) *SASLSSLKafka {
	t.Helper()
	vars := []string{"KAFKA_SASL_SSL_BROKERS", "KAFKA_SASL_SSL_CA", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}
	vals := make([]string, len(vars))
	for i, v := range vars {
		if vals[i] = os.Getenv(v); vals[i] == "" {
			msg := fmt.Sprintf("%s is not set: start Apache Kafka with deploy/kafka/run.sh (make test-kafka) for the SASL_SSL tests", v)
			if os.Getenv(RequireSASLSSLEnv) == "1" {
				t.Fatalf("%s (required: %s=1)", msg, RequireSASLSSLEnv)
			}
			t.Skip(msg)
		}
	}
	brokers, err := kafka.ParseBrokers(vals[0])
	if err != nil {
		t.Fatal(err)
	}
	return &SASLSSLKafka{Brokers: brokers, CAFile: vals[1], Username: vals[2], Password: vals[3]}
}
