package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/featurepipe/featurepipe/schemas"
)

// registryKeys are the allowed keys of kafka.schema_registry.
var registryKeys = []string{"url", "username", "password_env"}

// buildSchemaRegistry reads kafka.schema_registry into k.SchemaRegistry.
func (d *decoder) buildSchemaRegistry(k *Kafka) {
	n := d.kafka.get("schema_registry")
	if n == nil {
		return
	}
	m, ok := d.mapping(n, d.kafka.field("schema_registry"), registryKeys)
	if !ok {
		return
	}
	r := SchemaRegistry{
		URL:         strings.TrimSpace(d.str(m, "url", true, "the schema registry's base URL, e.g. http://localhost:8081")),
		Username:    d.str(m, "username", false, "the user for HTTP basic authentication"),
		PasswordEnv: d.str(m, "password_env", false, "the environment variable holding the password"),
		Line:        m.line,
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			d.addf(m.lineOf("url"), m.field("url"), "%q is not a schema registry URL; write http(s)://host:port[/path] (for Apicurio Registry, http://host:port/apis/ccompat/v7), without credentials", r.URL)
		}
	}
	switch {
	case r.Username != "" && r.PasswordEnv == "":
		d.addf(m.lineOf("username"), m.field("password_env"), "required with username: the name of the environment variable holding the password (the password itself never goes in this file)")
	case r.Username == "" && r.PasswordEnv != "":
		d.addf(m.lineOf("password_env"), m.field("username"), "required with password_env: the user to authenticate as")
	case r.PasswordEnv != "" && !envName.MatchString(r.PasswordEnv):
		d.addf(m.lineOf("password_env"), m.field("password_env"), "%q is not an environment variable name (letters, digits and _, not starting with a digit); name the variable, not the password", r.PasswordEnv)
	}
	k.SchemaRegistry = r
}

// buildEncoding checks a source's encoding and loads its writer_schemas.
func (d *decoder) buildEncoding(f *File, it sourceItem, load schemaLoader) {
	s, m := it.s, it.m
	switch strings.TrimSpace(s.Encoding) {
	case "", EncodingSingleObject:
		s.Encoding = EncodingSingleObject
	case EncodingConfluent:
		s.Encoding = EncodingConfluent
		if d.kafka.get("schema_registry") == nil {
			d.addf(m.lineOf("encoding"), m.field("encoding"), "encoding confluent reads writer schemas from a schema registry: add kafka.schema_registry with its url")
		}
		if len(s.WriterSchemaPaths) > 0 {
			d.addf(m.lineOf("writer_schemas"), m.field("writer_schemas"), "writer_schemas apply to single-object encoding only; with encoding confluent the writer schemas come from the schema registry by id")
		}
	default:
		d.addf(m.lineOf("encoding"), m.field("encoding"), "unknown encoding %q; allowed: %s (the default), %s", s.Encoding, EncodingSingleObject, EncodingConfluent)
	}
	if s.Encoding != EncodingSingleObject {
		return
	}
	for i, p := range s.WriterSchemaPaths {
		resolved, w, err := load(p)
		field := fmt.Sprintf("%s[%d]", m.field("writer_schemas"), i)
		if err != nil {
			d.addf(d.writerLine(m, i), field, "cannot load schema %s (resolved relative to the feature file): %v", resolved, err)
			continue
		}
		s.WriterSchemas = append(s.WriterSchemas, w)
	}
}

// writerLine is the line of writer_schemas item i.
func (d *decoder) writerLine(m mapping, i int) int {
	if n := m.get("writer_schemas"); n != nil && i < len(n.Content) && n.Content[i].Line > 0 {
		return n.Content[i].Line
	}
	return m.lineOf("writer_schemas")
}

// WriterSchemas returns every writer schema single-object records of the
// file's sources may carry: each source's schema and writer_schemas.
func (f *File) WriterSchemas() []*schemas.Schema {
	var out []*schemas.Schema
	for _, s := range f.Sources {
		if s.Schema != nil {
			out = append(out, s.Schema)
		}
		out = append(out, s.WriterSchemas...)
	}
	return out
}
