package schemas

// Internal helpers exposed to the external test package.
var (
	CanonicalFormOf = canonicalForm
	ParseInteger    = parseInteger
)

// FromJSONTokens is FromJSON without its flat-object fast path.
func (s *Schema) FromJSONTokens(obj []byte) (map[string]any, error) { return s.fromJSONTokens(obj) }
