package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir and
// returns their paths and a pool trusting the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "featurepipe test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestTokenCommand: `featurepipe token` writes the token to --out and a
// tokens-file entry (hash, no token) to stdout, which serve accepts.
func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "a.token")
	code, stdout, stderr := execCLI("token", "--consumer", "fraud-model", "--entities", "user", "--tags", "payments,pii", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	tok, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	token := strings.TrimSpace(string(tok))
	if !strings.HasPrefix(token, "fpt_") || strings.Contains(stdout, token) || strings.Contains(stderr, token) {
		t.Fatalf("token %q; stdout %q; stderr %q", token, stdout, stderr)
	}
	for _, w := range []string{`consumer: "fraud-model"`, "sha256: ", `entities: ["user"]`, `tags: ["payments", "pii"]`} {
		if !strings.Contains(stdout, w) {
			t.Errorf("entry %q lacks %q", stdout, w)
		}
	}
	if code, _, _ := execCLI("token", "--consumer", "x", "--entities", "user", "--out", out); code != 1 {
		t.Errorf("overwriting an existing token file: exit %d, want 1", code)
	}
	if code, _, _ := execCLI("token", "--entities", "user"); code != 2 {
		t.Errorf("no --consumer: exit %d, want 2", code)
	}
}

// TestServeTLSWithTokens runs `featurepipe serve --tokens --tls-cert
// --tls-key` and talks to it with a TLS client that trusts only the test
// certificate: no token 401, a token 200, plain HTTP refused.
func TestServeTLSWithTokens(t *testing.T) {
	f := newProduceFixture(t)
	certFile, keyFile, pool := selfSigned(t, f.dir)
	tokOut := filepath.Join(f.dir, "t.token")
	code, entry, stderr := execCLI("token", "--consumer", "tester", "--entities", "*", "--tags", "*", "--out", tokOut)
	if code != 0 {
		t.Fatal(stderr)
	}
	tokensFile := filepath.Join(f.dir, "tokens.yaml")
	if err := os.WriteFile(tokensFile, []byte("tokens:\n"+entry), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(tokOut)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--brokers", f.brokers, "--config", f.config, "--data", t.TempDir(),
			"--listen", addr, "--tokens", tokensFile, "--tls-cert", certFile, "--tls-key", keyFile, "--lookup-log-sample", "0"},
			&bytes.Buffer{}, &errOut)
	}()
	defer func() {
		cancel()
		select {
		case c := <-done:
			if c != 0 {
				t.Errorf("serve exit %d: %s", c, errOut.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, _ := get("/readyz", ""); c == 200 {
			break
		}
		if time.Now().After(deadline) {
			c, body := get("/readyz", "")
			t.Fatalf("not ready over TLS: %d %s; serve: %s", c, body, errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c, body := get("/v1/features/user/u1", ""); c != 401 || !strings.Contains(body, "missing_token") {
		t.Errorf("no token: %d %s", c, body)
	}
	if c, body := get("/v1/features/user/u1", strings.TrimSpace(string(tok))); c != 200 || !strings.Contains(body, `"results"`) {
		t.Errorf("with the token: %d %s", c, body)
	}
	// The web catalog is served at /ui/ and obeys the tokens: a browser
	// presents one once with ?token= and then carries it in a cookie.
	if c, body := get("/ui/", ""); c != 401 || !strings.Contains(body, `action="/ui/login"`) {
		t.Errorf("UI without a token: %d, want 401 and the sign-in form", c)
	}
	noFollow := &http.Client{Timeout: 10 * time.Second, Transport: client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get("https://" + addr + "/ui/features/txn_count_7d@1?token=" + strings.TrimSpace(string(tok)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ck := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/features/txn_count_7d@1" || !strings.Contains(ck, "Secure") {
		t.Errorf("UI ?token=: %d to %q, cookie %q; want 303 to the address without it and a Secure cookie", resp.StatusCode, resp.Header.Get("Location"), ck)
	}
	uiGet := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, "https://"+addr+path, strings.NewReader(body))
		req.Header.Set("Cookie", "featurepipe_token="+strings.TrimSpace(string(tok)))
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if c, body := uiGet("GET", "/ui/features/txn_count_7d@1", ""); c != 200 || !strings.Contains(body, "number of events over the last 7 days") {
		t.Errorf("UI feature page with the cookie: %d", c)
	}
	if c, body := uiGet("POST", "/ui/api/lookup", `{"entity":"user","keys":["u1"],"features":["txn_count_7d"]}`); c != 200 || !strings.Contains(body, `"results"`) {
		t.Errorf("UI console lookup with the cookie: %d %s", c, body)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered on the TLS listener")
		}
	}
}

func TestServeRejectsABadTokensFileAtStart(t *testing.T) {
	f := newProduceFixture(t)
	tokensFile := filepath.Join(f.dir, "tokens.yaml")
	if err := os.WriteFile(tokensFile, []byte("tokens:\n  - consumer: a\n    sha256: nothex\n    entities: [user]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := execCLI("serve", "--brokers", f.brokers, "--config", f.config, "--data", t.TempDir(),
		"--listen", "127.0.0.1:0", "--tokens", tokensFile)
	if code != 1 || !strings.Contains(stderr, tokensFile+":3: tokens[0].sha256: must be 64 hex digits") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = execCLI("serve", "--brokers", f.brokers, "--config", f.config, "--data", t.TempDir(),
		"--listen", "127.0.0.1:0", "--tls-cert", tokensFile)
	if code != 2 || !strings.Contains(stderr, "--tls-cert and --tls-key go together") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
