package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// SASL mechanisms kafka.security.sasl.mechanism accepts.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLOAuthBearer = "OAUTHBEARER"
)

// SASLMechanisms lists the accepted mechanisms, in the order messages list them.
var SASLMechanisms = []string{SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLOAuthBearer}

var (
	securityKeys = []string{"tls", "sasl"}
	tlsKeys      = []string{"ca_file", "cert_file", "key_file", "server_name"}
	saslKeys     = []string{"mechanism", "username", "password_env", "password_file", "token_file"}
	envName      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`) // a portable environment variable name
)

// Security is how every Kafka client featurepipe creates connects: the
// kafka.security block of the feature file. The zero value is a plaintext
// connection without authentication (the default when the block is absent).
//
// The feature file never holds a secret: a password comes from an
// environment variable (password_env) or a file (password_file), an
// OAUTHBEARER token from a file (token_file), and the TLS key from a file.
// Load checks the block's shape; the secrets themselves are read when a
// client is built (internal/kafka), so a file can be validated on a machine
// that does not hold them. File paths are made absolute against the feature
// file's directory at load.
type Security struct {
	TLS  *TLS  // nil: no TLS
	SASL *SASL // nil: no SASL authentication
}

// TLS is kafka.security.tls. An empty block (tls: {}) is TLS verified
// against the system's certificate authorities.
type TLS struct {
	// CAFile is a PEM bundle of the certificate authorities the brokers'
	// certificates are verified against. Empty: the system's roots.
	CAFile string
	// CertFile and KeyFile are the client's PEM certificate (chain) and
	// private key, for brokers that require client certificates (mutual
	// TLS). Both or neither.
	CertFile, KeyFile string
	// ServerName is the name the brokers' certificates must carry. Empty:
	// the host of each broker address, as dialed.
	ServerName string
	// At locates the block for messages ("features.yaml:7: kafka.security.tls").
	At string
}

// SASL is kafka.security.sasl: one mechanism and where its secret is.
type SASL struct {
	// Mechanism is one of SASLMechanisms.
	Mechanism string
	// Username is required by PLAIN and SCRAM, and not allowed with OAUTHBEARER.
	Username string
	// PasswordEnv names the environment variable holding the password
	// (PLAIN and SCRAM; exactly one of PasswordEnv and PasswordFile).
	PasswordEnv string
	// PasswordFile is a file whose content (one trailing newline dropped)
	// is the password. It is read on every authentication, so a rotated
	// secret is picked up by new connections.
	PasswordFile string
	// TokenFile holds the OAUTHBEARER token (required with OAUTHBEARER,
	// not allowed otherwise); re-read on every authentication, as mounted
	// short-lived tokens are rotated in place.
	TokenFile string
	// At locates the block for messages ("features.yaml:9: kafka.security.sasl").
	At string
}

// decodeSecurity checks kafka.security, if present, and fills s.
func (d *decoder) decodeSecurity(parent mapping, s *Security) {
	node := parent.get("security")
	if node == nil {
		return
	}
	m, ok := d.mapping(node, parent.field("security"), securityKeys)
	if !ok {
		return
	}
	at := func(sub mapping) string { return fmt.Sprintf("%s:%d: %s", d.file, sub.line, sub.path) }
	if tn := m.get("tls"); tn != nil {
		if tm, ok := d.mapping(tn, m.field("tls"), tlsKeys); ok {
			t := &TLS{
				CAFile:     d.filePath(tm, "ca_file", "PEM file of the certificate authorities that signed the brokers' certificates"),
				CertFile:   d.filePath(tm, "cert_file", "PEM file of the client certificate"),
				KeyFile:    d.filePath(tm, "key_file", "PEM file of the client certificate's private key"),
				ServerName: d.str(tm, "server_name", false, "the host name the brokers' certificates carry"),
				At:         at(tm),
			}
			switch {
			case t.CertFile != "" && t.KeyFile == "":
				d.addf(tm.lineOf("cert_file"), tm.field("key_file"), "required with cert_file: the PEM file of the client certificate's private key")
			case t.KeyFile != "" && t.CertFile == "":
				d.addf(tm.lineOf("key_file"), tm.field("cert_file"), "required with key_file: the PEM file of the client certificate")
			}
			s.TLS = t
		}
	}
	if sn := m.get("sasl"); sn != nil {
		sn, literal := d.dropLiteralPassword(sn, m.field("sasl"))
		if sm, ok := d.mapping(sn, m.field("sasl"), saslKeys); ok {
			s.SASL = d.decodeSASL(sm, at(sm), literal)
		}
	}
}

// dropLiteralPassword reports a password written into the sasl block
// itself (the one mistake worth its own message) and returns the block
// without it; literal says whether there was one.
func (d *decoder) dropLiteralPassword(n *yaml.Node, path string) (_ *yaml.Node, literal bool) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return n, false
	}
	cp := *n
	cp.Content = nil
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := deref(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "password" {
			d.addf(k.Line, join(path, "password"), "a password is never written in the feature file: name an environment variable that holds it (password_env: KAFKA_PASSWORD) or a file (password_file: /run/secrets/kafka-password)")
			literal = true
			continue
		}
		cp.Content = append(cp.Content, n.Content[i], n.Content[i+1])
	}
	return &cp, literal
}

func (d *decoder) decodeSASL(m mapping, at string, literalPassword bool) *SASL {
	s := &SASL{
		Mechanism:    d.str(m, "mechanism", true, "one of "+strings.Join(SASLMechanisms, ", ")),
		Username:     d.str(m, "username", false, "the SASL user name"),
		PasswordEnv:  d.str(m, "password_env", false, "the name of the environment variable holding the password"),
		PasswordFile: d.filePath(m, "password_file", "a file holding the password"),
		TokenFile:    d.filePath(m, "token_file", "a file holding the OAUTHBEARER token"),
		At:           at,
	}
	if s.Mechanism == "" {
		return s // reported
	}
	mech := strings.ToUpper(s.Mechanism)
	if !slices.Contains(SASLMechanisms, mech) {
		hint := ""
		if c := closeNames(mech, SASLMechanisms, 1); len(c) > 0 {
			hint = "; did you mean " + c[0] + "?"
		}
		d.addf(m.lineOf("mechanism"), m.field("mechanism"), "unknown SASL mechanism %q; allowed: %s%s", s.Mechanism, strings.Join(SASLMechanisms, ", "), hint)
		return s
	}
	s.Mechanism = mech
	if s.PasswordEnv != "" && !envName.MatchString(s.PasswordEnv) {
		d.addf(m.lineOf("password_env"), m.field("password_env"), "%q is not an environment variable name (letters, digits and _, not starting with a digit); name the variable that holds the password, never the password itself", s.PasswordEnv)
	}
	notWith := func(key string) {
		if m.get(key) != nil {
			d.addf(m.lineOf(key), m.field(key), "not used with mechanism %s; remove it", mech)
		}
	}
	if mech == SASLOAuthBearer {
		if s.TokenFile == "" && m.get("token_file") == nil {
			d.addf(m.lineOf("mechanism"), m.field("token_file"), "required with OAUTHBEARER: a file holding the token (re-read on every authentication)")
		}
		notWith("username")
		notWith("password_env")
		notWith("password_file")
		return s
	}
	notWith("token_file")
	if m.get("username") == nil {
		d.addf(m.lineOf("mechanism"), m.field("username"), "required with %s: the SASL user name", mech)
	}
	switch envSet, fileSet := m.get("password_env") != nil, m.get("password_file") != nil; {
	case envSet && fileSet:
		d.addf(m.lineOf("password_file"), m.field("password_file"), "give password_env or password_file, not both")
	case !envSet && !fileSet && !literalPassword:
		d.addf(m.lineOf("mechanism"), m.field("password_env"), "required with %s: password_env (an environment variable) or password_file (a file) holding the password; the password itself never goes in the feature file", mech)
	}
	return s
}

// filePath returns the file path under key (not required), made absolute
// against the feature file's directory when relative.
func (d *decoder) filePath(m mapping, key, need string) string {
	n := m.get(key)
	if n == nil {
		return ""
	}
	p := d.str(m, key, true, need)
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if abs, err := filepath.Abs(filepath.Join(filepath.Dir(d.file), p)); err == nil {
		return abs
	}
	return filepath.Join(filepath.Dir(d.file), p)
}
