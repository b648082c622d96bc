package ui

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
)

// yamlFeature is a feature as the feature file spells it, in its key order.
type yamlFeature struct {
	Name        string   `yaml:"name"`
	Version     int      `yaml:"version"`
	Entity      string   `yaml:"entity"`
	Source      string   `yaml:"source,omitempty"`
	Aggregation string   `yaml:"aggregation,omitempty"`
	Field       string   `yaml:"field,omitempty"`
	Window      string   `yaml:"window,omitempty"`
	TTL         string   `yaml:"ttl,omitempty"`
	Expression  string   `yaml:"expression,omitempty"`
	Inputs      []string `yaml:"inputs,flow,omitempty"`
	Hop         string   `yaml:"hop,omitempty"`
	Where       string   `yaml:"where,omitempty"`
	Bucket      string   `yaml:"bucket,omitempty"`
	MaxBuckets  int      `yaml:"max_buckets,omitempty"`
	Default     *float64 `yaml:"default,omitempty"`
	Owner       string   `yaml:"owner"`
	Description string   `yaml:"description"`
	Tags        []string `yaml:"tags,flow,omitempty"`
	Deprecated  bool     `yaml:"deprecated,omitempty"`
	ReplacedBy  string   `yaml:"replaced_by,omitempty"`
	Sunset      string   `yaml:"sunset,omitempty"`
}

// featureYAML is the feature-file entry that defines f (the hop always
// spelled out, also when the file left it to its default).
func featureYAML(f *config.Feature) string {
	y := yamlFeature{Name: f.Name, Version: f.Version, Entity: f.Entity, Source: f.Source, Aggregation: f.Aggregation.String(),
		Field: f.Field, Window: "lifetime", Where: f.Where, Bucket: f.Bucket, MaxBuckets: f.MaxBuckets, Default: f.Default, Owner: f.Owner,
		Description: strings.TrimSpace(f.Description), Tags: f.Tags, Deprecated: f.Deprecated, ReplacedBy: f.ReplacedBy}
	switch {
	case f.Derived != nil: // no source, aggregation or window; inputs pinned
		y.Aggregation, y.Window, y.Expression = "", "", f.Derived.Expr
		for _, in := range f.Derived.Inputs {
			y.Inputs = append(y.Inputs, in.ID)
		}
	case !f.Window.Lifetime():
		y.Window, y.Hop = aggregations.FormatDuration(f.Window.Size), aggregations.FormatDuration(f.Window.Hop)
	}
	if f.TTL > 0 {
		y.TTL = aggregations.FormatDuration(f.TTL)
	}
	if !f.Sunset.IsZero() {
		y.Sunset = f.Sunset.Format(time.DateOnly)
	}
	b, err := yaml.Marshal([]yamlFeature{y})
	if err != nil {
		return "# " + err.Error()
	}
	return string(b)
}

// registeredYAML shows a registered definition (a version no longer in the
// feature file) as YAML.
func registeredYAML(id string, fields [][2]string) string {
	var b strings.Builder
	b.WriteString("# registered definition of " + id + " (not in the running feature file)\n")
	for _, kv := range fields {
		v, _ := yaml.Marshal(kv[1])
		b.WriteString(kv[0] + ": " + strings.TrimSpace(string(v)) + "\n")
	}
	return b.String()
}

// examples returns copy-paste commands for r: a curl lookup, Feast's HTTP
// request, and a backfill, addressed to the host the page was served from.
func examples(req *http.Request, c *catalog, r *featureRow, tokens bool) (curl, feast, backfill string) {
	scheme := "http"
	if req.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + req.Host
	key := "KEY"
	joinKey := r.Entity + "_id"
	if e, ok := c.cfg.Entity(r.Entity); ok {
		joinKey = e.Key
	}
	auth := ""
	if tokens {
		auth = ` -H "Authorization: Bearer $FEATUREPIPE_TOKEN"`
	}
	body, _ := json.Marshal(map[string]any{"entity": r.Entity, "keys": []string{key}, "features": []string{r.ID}})
	curl = "curl -s " + base + "/v1/lookup" + auth + " -d '" + string(body) + "'"
	fb, _ := json.Marshal(map[string]any{"features": []string{r.Source + ":" + r.ID}, "entities": map[string][]string{joinKey: {key}}})
	feast = "curl -s " + base + "/get-online-features" + auth + " -d '" + string(fb) + "'"
	cfgPath := c.cfg.Path
	if cfgPath == "" || !strings.HasSuffix(cfgPath, ".yaml") && !strings.HasSuffix(cfgPath, ".yml") {
		cfgPath = "features.yaml"
	}
	backfill = "featurepipe backfill --brokers $KAFKA_BROKERS --config " + shellQuote(cfgPath) +
		" --spine spine.csv --features " + r.ID + " --out " + strings.ReplaceAll(r.Name, "/", "_") + "_v" + strconv.Itoa(r.Version) + ".parquet"
	return curl, feast, backfill
}

func shellQuote(s string) string {
	if strings.IndexFunc(s, func(c rune) bool {
		return !(c == '/' || c == '.' || c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
