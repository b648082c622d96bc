package schemas

// Internal helpers exposed to the external test package.
var (
	CanonicalFormOf = canonicalForm
	ParseInteger    = parseInteger
)
