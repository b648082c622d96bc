package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A full kafka.security block loads into Security with its file paths made
// absolute against the feature file's directory, and the mechanism's case
// normalised; without the block the connection is plaintext.
func TestSecurityLoads(t *testing.T) {
	dir := t.TempDir()
	fsys := schemaFS(t)
	for name, f := range fsys {
		if err := os.WriteFile(filepath.Join(dir, name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	doc := `kafka:
  security:
    tls:
      ca_file: certs/ca.pem
      cert_file: /etc/featurepipe/client.pem
      key_file: client.key
      server_name: kafka.internal
    sasl:
      mechanism: scram-sha-512
      username: featurepipe
      password_env: KAFKA_PASSWORD
` + header + "features:\n" + validFeature
	path := filepath.Join(dir, "features.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := TLS{CAFile: filepath.Join(dir, "certs/ca.pem"), CertFile: "/etc/featurepipe/client.pem", KeyFile: filepath.Join(dir, "client.key"),
		ServerName: "kafka.internal", At: path + ":4: kafka.security.tls"}
	if got := f.Kafka.Security.TLS; got == nil || *got != want {
		t.Errorf("tls = %+v\nwant %+v", got, want)
	}
	wantSASL := SASL{Mechanism: SASLScramSHA512, Username: "featurepipe", PasswordEnv: "KAFKA_PASSWORD", At: path + ":9: kafka.security.sasl"} // the line of its first key
	if got := f.Kafka.Security.SASL; got == nil || *got != wantSASL {
		t.Errorf("sasl = %+v\nwant %+v", got, wantSASL)
	}

	oauth := mustParse(t, "kafka:\n  security:\n    tls: {}\n    sasl: {mechanism: OAUTHBEARER, token_file: /var/run/secrets/kafka/token}\n"+header+"features:\n"+validFeature)
	if s := oauth.Kafka.Security; s.TLS == nil || *s.TLS != (TLS{At: "features.yaml:3: kafka.security.tls"}) ||
		s.SASL == nil || s.SASL.Mechanism != SASLOAuthBearer || s.SASL.TokenFile != "/var/run/secrets/kafka/token" {
		t.Errorf("tls: {} and OAUTHBEARER: %+v %+v", s.TLS, s.SASL)
	}
	if s := mustParse(t, header+"features:\n"+validFeature).Kafka.Security; s.TLS != nil || s.SASL != nil {
		t.Errorf("no security block: %+v, want plaintext", s)
	}
}

// TestInvalidSecurity: every broken rule of kafka.security is one problem
// on the marked line, naming the field.
func TestInvalidSecurity(t *testing.T) {
	tests := []struct {
		name, block, field, msg string
	}{
		{"unknown mechanism suggests the close one", `
    sasl:
      mechanism: SCRAM-SHA-51 # want
      username: u
      password_env: P`, "kafka.security.sasl.mechanism", `unknown SASL mechanism "SCRAM-SHA-51"; allowed: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER; did you mean SCRAM-SHA-512?`},
		{"a password is never written in the file", `
    sasl:
      mechanism: PLAIN
      username: u
      password: hunter2 # want`, "kafka.security.sasl.password", `a password is never written in the feature file: name an environment variable that holds it`},
		{"password_env names a variable, not the password", `
    sasl:
      mechanism: PLAIN
      username: u
      password_env: "hunter2!" # want`, "kafka.security.sasl.password_env", `"hunter2!" is not an environment variable name`},
		{"SCRAM needs a user", `
    sasl:
      mechanism: SCRAM-SHA-256 # want
      password_env: P`, "kafka.security.sasl.username", "required with SCRAM-SHA-256: the SASL user name"},
		{"SCRAM needs a password source", `
    sasl:
      mechanism: SCRAM-SHA-256 # want
      username: u`, "kafka.security.sasl.password_env", "password_env (an environment variable) or password_file (a file)"},
		{"one password source only", `
    sasl:
      mechanism: PLAIN
      username: u
      password_env: P
      password_file: p.txt # want`, "kafka.security.sasl.password_file", "give password_env or password_file, not both"},
		{"PLAIN takes no token", `
    sasl:
      mechanism: PLAIN
      username: u
      password_env: P
      token_file: t # want`, "kafka.security.sasl.token_file", "not used with mechanism PLAIN"},
		{"OAUTHBEARER needs a token file", `
    sasl:
      mechanism: OAUTHBEARER # want`, "kafka.security.sasl.token_file", "required with OAUTHBEARER"},
		{"OAUTHBEARER takes no user", `
    sasl:
      mechanism: OAUTHBEARER
      username: u # want
      token_file: t`, "kafka.security.sasl.username", "not used with mechanism OAUTHBEARER"},
		{"mechanism is required", `
    sasl:
      username: u # want
      password_env: P`, "kafka.security.sasl.mechanism", "required: one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"},
		{"a client certificate needs its key", `
    tls:
      cert_file: c.pem # want`, "kafka.security.tls.key_file", "required with cert_file"},
		{"a key needs its certificate", `
    tls:
      key_file: c.key # want`, "kafka.security.tls.cert_file", "required with key_file"},
		{"tls is a mapping", `
    tls: true # want`, "kafka.security.tls", "expected a mapping with keys ca_file, cert_file, key_file, server_name"},
		{"unknown tls key", `
    tls:
      ca_fil: ca.pem # want`, "kafka.security.tls.ca_fil", "did you mean ca_file?"},
		{"unknown security key", `
    ssl: {} # want`, "kafka.security.ssl", "allowed: tls, sasl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "kafka:\n  security:" + tt.block + "\n" + header + "features:\n" + validFeature
			wantLine := markedLine(t, doc)
			f, err := Parse("features.yaml", []byte(doc), schemaFS(t), ".")
			if f != nil {
				t.Fatalf("Parse accepted:\n%s", doc)
			}
			var e *Error
			if !errors.As(err, &e) || errors.As(err, new(Errors)) {
				t.Fatalf("got %v; want exactly one problem\n--- file ---\n%s", err, doc)
			}
			if e.Line != wantLine || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got  %v\nwant features.yaml:%d: %s: ...%s...", e, wantLine, tt.field, tt.msg)
			}
		})
	}
}
