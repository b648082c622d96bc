package lookup

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/featurepipe/featurepipe/internal/config"
)

// Access control of the lookup API.
//
// A tokens file (serve --tokens) lists the API tokens a replica accepts, by
// the hex SHA-256 of the token, never the token itself:
//
//	tokens:
//	  - consumer: fraud-model        # recorded in the lookup log (usage statistics)
//	    sha256: 9f2c…(64 hex digits)  # `featurepipe token` prints a new token and this line
//	    entities: [user]             # entities it may read; "*": every entity
//	    tags: [payments, fraud]      # feature tags it may read; "*": every tag
//
// A request to a lookup route (POST /v1/lookup, GET /v1/features/…,
// POST /get-online-features) must carry "Authorization: Bearer <token>".
// No or an unknown token: 401 (with WWW-Authenticate: Bearer). A known token
// reading an entity outside its entities, or a feature with a tag outside its
// tags, gets 403: a feature is readable only when every one of its tags is
// granted (untagged features need no tag), so features tagged pii are read
// only with the pii scope. GET /v1/features/{entity}/{key} reads every feature
// of the entity, so it needs every tag they carry. /healthz, /readyz and
// /metrics stay open (probes and scrapers).
//
// Tokens are random (256 bits, see NewToken), so one SHA-256 is enough to
// store them: there is nothing to guess from the hash. A presented token is
// hashed and compared with every listed hash in constant time
// (crypto/subtle), without stopping at a match. Tokens are never logged;
// errors name the consumer, never the token.
//
// Scopes are checked after the request is resolved (the handler has read the
// body and picked the feature versions) and before anything is written: an
// out-of-scope request costs the lookup but never sees a value, and is not
// logged to the lookup log.

// Token is one accepted API token: its consumer name and scopes.
type Token struct {
	// Consumer names who uses the token; lookups answered with it are
	// recorded under this consumer in the lookup log. Several tokens may
	// share a consumer (rotation).
	Consumer string
	// Entities the token may read; "*" is every entity.
	Entities []string
	// Tags the token may read features with; "*" is every tag.
	Tags []string

	hash [sha256.Size]byte
}

// Tokens is the set of tokens a replica accepts (Options.Tokens). A nil
// *Tokens accepts every request (an open, development service).
type Tokens struct {
	list []*Token
}

// consumers returns the consumer of every token (with repeats).
func (ts *Tokens) consumers() []string {
	if ts == nil {
		return nil
	}
	out := make([]string, 0, len(ts.list))
	for _, t := range ts.list {
		out = append(out, t.Consumer)
	}
	return out
}

// TokenPrefix starts every token NewToken makes, so that a leaked token is
// easy to recognise (e.g. by secret scanners).
const TokenPrefix = "fpt_"

// NewToken returns a new random token (TokenPrefix and 32 random bytes,
// base64url) and its hash, the hex SHA-256 to put in a tokens file.
func NewToken() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("random token: %w", err)
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token), nil
}

// HashToken returns the hex SHA-256 of token, as a tokens file stores it.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Len returns the number of tokens.
func (ts *Tokens) Len() int {
	if ts == nil {
		return 0
	}
	return len(ts.list)
}

// LoadTokens reads and validates the tokens file at path against cfg (every
// entity named must exist; nil cfg: entities are not checked). Problems in the file are reported as
// *config.Error (one) or config.Errors (all of them), each naming the file,
// line and field, like feature-file errors.
func LoadTokens(path string, cfg *config.File) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	return ParseTokens(path, data, cfg)
}

var (
	tokensFileKeys = []string{"tokens"}
	tokenKeys      = []string{"consumer", "sha256", "entities", "tags"}
)

// ParseTokens validates a tokens file's content; name identifies it in
// errors. See LoadTokens.
func ParseTokens(name string, data []byte, cfg *config.File) (*Tokens, error) {
	p := tokenParser{file: name}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &config.Error{File: name, Msg: fmt.Sprintf("invalid YAML: %v", err)}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, &config.Error{File: name, Msg: "empty tokens file: list the accepted tokens under tokens:"}
	}
	root := p.mapping(doc.Content[0], "", tokensFileKeys)
	ts := &Tokens{}
	list := root["tokens"]
	switch {
	case root == nil:
	case list == nil:
		p.errf(doc.Content[0].Line, "tokens", "missing: list the accepted tokens (featurepipe token prints one)")
	case list.Kind != yaml.SequenceNode:
		p.errf(list.Line, "tokens", "must be a list of tokens")
	case len(list.Content) == 0:
		p.errf(list.Line, "tokens", "no tokens: every request would be refused; list at least one")
	default:
		seen := map[[sha256.Size]byte]string{}
		for i, n := range list.Content {
			field := fmt.Sprintf("tokens[%d]", i)
			m := p.mapping(n, field, tokenKeys)
			if m == nil {
				continue
			}
			t := &Token{}
			t.Consumer = p.str(m, n, field, "consumer")
			if h := p.str(m, n, field, "sha256"); h != "" {
				b, err := hex.DecodeString(strings.ToLower(h))
				switch {
				case err != nil || len(b) != sha256.Size:
					p.errf(m["sha256"].Line, field+".sha256", "must be 64 hex digits: the SHA-256 of the token, not the token (featurepipe token prints it)")
				default:
					copy(t.hash[:], b)
					if prev, dup := seen[t.hash]; dup {
						p.errf(m["sha256"].Line, field+".sha256", fmt.Sprintf("the same hash as %s", prev))
					}
					seen[t.hash] = field
				}
			}
			t.Entities = p.list(m, n, field, "entities", true)
			for _, e := range t.Entities {
				if e == "*" || cfg == nil {
					continue
				}
				if _, ok := cfg.Entity(e); !ok {
					p.errf(m["entities"].Line, field+".entities", fmt.Sprintf("unknown entity %q; entities: %s", e, entityList(cfg)))
				}
			}
			t.Tags = p.list(m, n, field, "tags", false)
			ts.list = append(ts.list, t)
		}
	}
	switch len(p.errs) {
	case 0:
		return ts, nil
	case 1:
		return nil, p.errs[0]
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	return nil, p.errs
}

func entityList(cfg *config.File) string {
	names := make([]string, 0, len(cfg.Entities))
	for _, e := range cfg.Entities {
		names = append(names, e.Name)
	}
	return strings.Join(append(names, `"*"`), ", ")
}

// tokenParser collects every problem of a tokens file.
type tokenParser struct {
	file string
	errs config.Errors
}

func (p *tokenParser) errf(line int, field, msg string) {
	p.errs = append(p.errs, &config.Error{File: p.file, Line: line, Field: field, Msg: msg})
}

// mapping returns n's keys (each allowed) to their values, or nil after
// recording why n is not a usable mapping.
func (p *tokenParser) mapping(n *yaml.Node, field string, allowed []string) map[string]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		p.errf(n.Line, field, "must be a mapping")
		return nil
	}
	m := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Value == "token":
			p.errf(k.Line, joinField(field, k.Value), "plaintext tokens are not accepted: store the token's sha256 (featurepipe token prints it)")
		case !slices.Contains(allowed, k.Value):
			p.errf(k.Line, joinField(field, k.Value), fmt.Sprintf("unknown field; allowed: %s", strings.Join(allowed, ", ")))
		case m[k.Value] != nil:
			p.errf(k.Line, joinField(field, k.Value), "duplicate field")
		default:
			m[k.Value] = v
		}
	}
	return m
}

func joinField(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// str returns the required non-empty string value of key.
func (p *tokenParser) str(m map[string]*yaml.Node, parent *yaml.Node, field, key string) string {
	v := m[key]
	switch {
	case v == nil:
		p.errf(parent.Line, joinField(field, key), "missing")
		return ""
	case v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" || strings.TrimSpace(v.Value) == "":
		// Any other scalar is taken as written: a hash of digits and one
		// "e" reads as a YAML float, a consumer "42" as an int.
		p.errf(v.Line, joinField(field, key), "must be a non-empty string")
		return ""
	}
	return v.Value
}

// list returns the string list of key; required lists must be non-empty.
func (p *tokenParser) list(m map[string]*yaml.Node, parent *yaml.Node, field, key string, required bool) []string {
	v := m[key]
	if v == nil {
		if required {
			p.errf(parent.Line, joinField(field, key), `missing: list what the token may read ("*": everything)`)
		}
		return nil
	}
	if v.Kind != yaml.SequenceNode || (required && len(v.Content) == 0) {
		p.errf(v.Line, joinField(field, key), `must be a non-empty list of names ("*": everything)`)
		return nil
	}
	out := make([]string, 0, len(v.Content))
	for _, e := range v.Content {
		if e.Kind != yaml.ScalarNode || strings.TrimSpace(e.Value) == "" {
			p.errf(e.Line, joinField(field, key), "must list non-empty names")
			continue
		}
		out = append(out, e.Value)
	}
	return out
}

// authError is a 401: the endpoint adds the WWW-Authenticate challenge.
func authError(code, msg string) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: code, message: msg}
}

// authenticate returns the token r carries, (nil, nil) when ts is nil (an
// open service), or a 401 error. It never logs or echoes the token.
func (ts *Tokens) authenticate(r *http.Request) (*Token, *apiError) {
	if ts == nil {
		return nil, nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, authError("missing_token", `this API needs a token: send "Authorization: Bearer <token>"`)
	}
	scheme, tok, ok := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, authError("invalid_token", `the Authorization header must be "Bearer <token>"`)
	}
	found := ts.find(tok)
	if found == nil {
		return nil, authError("invalid_token", "the token is not valid for this service")
	}
	return found, nil
}

// find returns the token whose hash is tok's, or nil.
func (ts *Tokens) find(tok string) *Token {
	sum := sha256.Sum256([]byte(tok))
	var found *Token
	for _, t := range ts.list { // every hash, no early exit: constant time
		if subtle.ConstantTimeCompare(sum[:], t.hash[:]) == 1 {
			found = t
		}
	}
	return found
}

// Consumer reports whether tok is one of the accepted tokens and whose it
// is, comparing in constant time like the API does. A nil *Tokens accepts
// none. The web UI (pipeline/ui) checks the token a browser presents with it.
func (ts *Tokens) Consumer(tok string) (consumer string, ok bool) {
	if ts == nil || tok == "" {
		return "", false
	}
	if t := ts.find(tok); t != nil {
		return t.Consumer, true
	}
	return "", false
}

// permit checks that t may read what a answers: its entity and every
// feature's tags. A nil answer is refused (fail closed).
func (t *Token) permit(a *lookupAnswer) *apiError {
	if a == nil || a.info == nil {
		return &apiError{http.StatusForbidden, "forbidden", "the request reads nothing this token can be checked against"}
	}
	if !grants(t.Entities, a.info.name) {
		return &apiError{http.StatusForbidden, "forbidden",
			fmt.Sprintf("consumer %s may not read entity %s (its entities: %s)", t.Consumer, a.info.name, strings.Join(t.Entities, ", "))}
	}
	for _, f := range a.feats {
		if def, tag := t.missingTag(f.def); def != nil {
			via := ""
			if def != f.def {
				via = fmt.Sprintf(" (read by derived feature %s)", f.def.ID)
			}
			return &apiError{http.StatusForbidden, "forbidden",
				fmt.Sprintf("feature %s%s is tagged %s; consumer %s lacks the %s scope", def.ID, via, tag, t.Consumer, tag)}
		}
	}
	return nil
}

// missingTag returns a tag of def that t does not grant, with the feature
// carrying it, or nil. A derived feature reveals its inputs, so their tags
// (recursively) count as its own.
func (t *Token) missingTag(def *config.Feature) (*config.Feature, string) {
	for _, tag := range def.Tags {
		if !grants(t.Tags, tag) {
			return def, tag
		}
	}
	if def.Derived != nil {
		for _, in := range def.Derived.Inputs {
			if f, tag := t.missingTag(in); f != nil {
				return f, tag
			}
		}
	}
	return nil, ""
}

// grants reports whether scope (names, or "*") covers name.
func grants(scope []string, name string) bool {
	for _, s := range scope {
		if s == name || s == "*" {
			return true
		}
	}
	return false
}
