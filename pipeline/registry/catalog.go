package registry

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"os/user"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// FeatureRef is one feature version a dataset was computed from (or a
// model needs), with the hash of the definition used.
type FeatureRef struct {
	Feature string `json:"feature"` // name@version
	Column  string `json:"column,omitempty"`
	Hash    string `json:"hash"`
}

// TimeRange is the span of a dataset's row timestamps.
type TimeRange struct {
	Min time.Time `json:"min"`
	Max time.Time `json:"max"`
}

// Dataset is one registered version of a training data set, written by
// every backfill run. Name@Version is immutable: registering the same name
// again makes the next version (RegisterDataset).
type Dataset struct {
	Name        string `json:"name"`
	Version     int    `json:"version"`
	Description string `json:"description,omitempty"`
	Owner       string `json:"owner,omitempty"`
	// Service is the feature service the columns came from ("" when the
	// features were listed).
	Service  string       `json:"service,omitempty"`
	Entity   string       `json:"entity"`
	Features []FeatureRef `json:"features"`
	// SpinePath and SpineSHA256 identify the spine.
	SpinePath   string `json:"spine_path"`
	SpineSHA256 string `json:"spine_sha256"`
	Rows        int    `json:"rows"`
	// TimeRange spans the rows' timestamps; nil without rows.
	TimeRange   *TimeRange `json:"time_range,omitempty"`
	PointInTime string     `json:"point_in_time"`
	// Location is where the data set was written (absolute path or URI)
	// and Format its format (csv, parquet).
	Location  string    `json:"location"`
	Format    string    `json:"format"`
	Config    string    `json:"config,omitempty"` // feature file path
	CreatedAt time.Time `json:"created_at"`
	// Statistics of each feature's column (count, null rate, moments,
	// quantiles and the sketch behind them), by feature id (name@version),
	// as in the manifest: the training baseline drift is measured against
	// (monitor.Live). Empty for datasets registered before statistics were
	// recorded. Cost: the sketches make a record a few KB per feature.
	Statistics map[string]*monitor.Stats `json:"statistics,omitempty"`
	Actor      string                    `json:"actor"`
	// RegistrationID is random per registration attempt: when two
	// registrants write the same name@version, the first record in the log
	// wins and each tells by this id whether it was the first.
	RegistrationID string `json:"registration_id"`
}

// ID is name@version.
func (d Dataset) ID() string { return d.Name + "@" + strconv.Itoa(d.Version) }

// Model is one registered model version: its training dataset, metrics,
// limitations and serving requirements. The model file itself stays where
// the team keeps it (URI). Name@Version is immutable (RegisterModel).
type Model struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	Dataset string `json:"dataset"` // name@version of a registered dataset
	// Service is the feature service that serves the model's features;
	// ServiceFeatures its features as the feature file lists them (empty
	// when the service is known only from the catalog).
	Service         string             `json:"service"`
	ServiceFeatures []string           `json:"service_features,omitempty"`
	Metrics         map[string]float64 `json:"metrics,omitempty"`
	Owner           string             `json:"owner,omitempty"`
	Description     string             `json:"description,omitempty"`
	Limitations     string             `json:"limitations,omitempty"`
	URI             string             `json:"uri,omitempty"`
	// Features are the feature versions (with definition hashes) the model
	// was trained on: the training dataset's.
	Features     []FeatureRef `json:"features"`
	RegisteredAt time.Time    `json:"registered_at"`
	Actor        string       `json:"actor"`
	// RegistrationID: see Dataset.RegistrationID.
	RegistrationID string `json:"registration_id"`
}

// ID is name@version.
func (m Model) ID() string { return m.Name + "@" + strconv.Itoa(m.Version) }

// sameContent reports whether m and o describe the same model version,
// ignoring when, by whom and in which attempt they were registered.
func (m Model) sameContent(o Model) bool {
	m.RegisteredAt, m.Actor, m.RegistrationID = time.Time{}, "", ""
	o.RegisteredAt, o.Actor, o.RegistrationID = time.Time{}, "", ""
	return reflect.DeepEqual(m, o)
}

// Errors of the catalog; returned wrapped with the details.
var (
	// ErrInvalid is a dataset or model that fails validation.
	ErrInvalid = errors.New("invalid catalog entry")
	// ErrModelExists is a model version registered before with other content.
	ErrModelExists = errors.New("model version already registered with different content")
	// ErrNotFound is a reference to a dataset or model that is not registered.
	ErrNotFound = errors.New("not in the catalog")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// ValidName checks a dataset or model name: letters, digits, '_', '.', '-',
// starting with a letter or digit (no '@' or '/': they delimit ids and keys).
func ValidName(kind, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %s name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", ErrInvalid, kind, name)
	}
	return nil
}

// ParseRef parses "name@version" (version >= 1).
func ParseRef(ref string) (name string, version int, err error) {
	name, v, ok := strings.Cut(ref, "@")
	if !ok {
		return "", 0, fmt.Errorf("%w: %q: want name@version, e.g. train_2026_11@1", ErrInvalid, ref)
	}
	version, err = strconv.Atoi(v)
	if err != nil || version < 1 {
		return "", 0, fmt.Errorf("%w: %q: the version must be a whole number >= 1", ErrInvalid, ref)
	}
	if err := ValidName("", name); err != nil {
		return "", 0, fmt.Errorf("%w: %q: bad name", ErrInvalid, ref)
	}
	return name, version, nil
}

var metricRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.:-]*$`)

// ParseMetric parses one "name=value" metric (e.g. auc=0.912): the name as
// a Prometheus-like identifier, the value a finite number.
func ParseMetric(s string) (string, float64, error) {
	name, val, ok := strings.Cut(s, "=")
	name, val = strings.TrimSpace(name), strings.TrimSpace(val)
	if !ok || !metricRE.MatchString(name) {
		return "", 0, fmt.Errorf("%w: metric %q: want name=value, e.g. auc=0.912", ErrInvalid, s)
	}
	f, err := strconv.ParseFloat(val, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return "", 0, fmt.Errorf("%w: metric %q: the value must be a finite number", ErrInvalid, s)
	}
	return name, f, nil
}

// applyDataset folds a dataset record; the first record of a name@version
// in the log wins over a later one of another registration; v.mu is held.
func (v *View) applyDataset(r Record) {
	if r.Tombstone {
		delete(v.datasets, r.ID)
		return
	}
	if old, ok := v.datasets[r.ID]; ok && old.RegistrationID != r.Dataset.RegistrationID {
		return
	}
	v.datasets[r.ID] = *r.Dataset
}

// applyModel: as applyDataset.
func (v *View) applyModel(r Record) {
	if r.Tombstone {
		delete(v.models, r.ID)
		return
	}
	if old, ok := v.models[r.ID]; ok && old.RegistrationID != r.Model.RegistrationID {
		return
	}
	v.models[r.ID] = *r.Model
}

// Dataset returns the registered dataset name@version.
func (v *View) Dataset(id string) (Dataset, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	d, ok := v.datasets[id]
	return d, ok
}

// NewestDatasetWith returns the newest registered dataset (in the order of
// Datasets) that has statistics of feature version id (name@version): the
// default drift baseline of that version. ok is false when no dataset has.
// Cost: one pass over the datasets, no sort.
func (v *View) NewestDatasetWith(id string) (d Dataset, ok bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, c := range v.datasets {
		if c.Statistics[id] == nil {
			continue
		}
		if !ok || newerDataset(c, d) < 0 {
			d, ok = c, true
		}
	}
	return d, ok
}

// newerDataset orders datasets newest first: by created_at, then name
// ascending and version descending (the order of Datasets).
func newerDataset(a, b Dataset) int {
	return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(a.Name, b.Name), cmp.Compare(b.Version, a.Version))
}

// Model returns the registered model name@version.
func (v *View) Model(id string) (Model, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	m, ok := v.models[id]
	return m, ok
}

// Datasets returns every registered dataset version, newest first (by
// created_at, then name and version descending).
func (v *View) Datasets() []Dataset {
	v.mu.RLock()
	out := make([]Dataset, 0, len(v.datasets))
	for _, d := range v.datasets {
		out = append(out, d)
	}
	v.mu.RUnlock()
	slices.SortFunc(out, newerDataset)
	return out
}

// Models returns every registered model version, newest first (by
// registered_at, then name and version descending).
func (v *View) Models() []Model {
	v.mu.RLock()
	out := make([]Model, 0, len(v.models))
	for _, m := range v.models {
		out = append(out, m)
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b Model) int {
		return cmp.Or(b.RegisteredAt.Compare(a.RegisteredAt), strings.Compare(a.Name, b.Name), cmp.Compare(b.Version, a.Version))
	})
	return out
}

// History returns every registered version of the feature name, oldest
// version first.
func (v *View) History(name string) []Definition {
	v.mu.RLock()
	var out []Definition
	for id, d := range v.defs {
		if n, _, ok := strings.Cut(id, "@"); ok && n == name {
			out = append(out, d)
		}
	}
	v.mu.RUnlock()
	version := func(d Definition) int {
		_, s, _ := strings.Cut(d.Feature, "@")
		n, _ := strconv.Atoi(s)
		return n
	}
	slices.SortFunc(out, func(a, b Definition) int { return cmp.Compare(version(a), version(b)) })
	return out
}

// nextDatasetVersion is one more than the newest version of name (1 for a
// new name).
func (v *View) nextDatasetVersion(name string) int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	n := 0
	for _, d := range v.datasets {
		if d.Name == name {
			n = max(n, d.Version)
		}
	}
	return n + 1
}

// serviceInCatalog reports whether a registered dataset was built from the
// feature service name.
func (v *View) serviceInCatalog(name string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, d := range v.datasets {
		if d.Service == name {
			return true
		}
	}
	return false
}

// OSUser returns the name of the OS user running the process ($USER when
// the user database has no entry, "unknown" when neither is known): the
// default actor of every catalog registration.
func OSUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

func registrationID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

// testHookBeforeWrite, when set (tests), runs before each dataset or model
// record is written: a test registers a rival there to lose a race for sure.
var testHookBeforeWrite func()

// maxAttempts bounds the retries of a registration that keeps losing races.
const maxAttempts = 20

// readView reads the whole registry topic (kafka.ReadToEnd) into a new view.
func readView(ctx context.Context, cl *kgo.Client, topic string) (*View, error) {
	v := NewView()
	err := kafka.ReadToEnd(ctx, cl, topic, func(r *kgo.Record) error {
		_ = v.Apply(r.Key, r.Value) // unreadable records: Load warns about them
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the registry %s: %w", topic, err)
	}
	return v, nil
}

// RegisterDataset registers d as the next version of d.Name and returns it
// with Version and RegistrationID set. d.Name must be a ValidName; the
// other fields are recorded as given (CreatedAt defaults to now).
//
// Nothing is overwritten, also under races: it reads the registry to its
// end, writes name@(newest+1), reads it to its end again and keeps the
// version only if its record is the first of that key in the log (the one
// every View keeps). A registrant that lost rewrites the winner's record
// (so that compaction, which keeps a key's last record, keeps the winner's)
// and retries with the next version, up to 20 times. Cost: two reads of the
// whole topic per attempt.
func RegisterDataset(ctx context.Context, cl *kgo.Client, topic string, d Dataset) (Dataset, error) {
	if err := ValidName("dataset", d.Name); err != nil {
		return Dataset{}, err
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = time.Now().UTC()
	}
	v, err := readView(ctx, cl, topic)
	if err != nil {
		return Dataset{}, err
	}
	for range maxAttempts {
		d.Version = v.nextDatasetVersion(d.Name)
		d.RegistrationID = registrationID()
		var mine bool
		v, _, mine, err = claim(ctx, cl, topic, KindDataset, d.ID(), d.RegistrationID, d, DatasetRecord,
			func(v *View) (Dataset, string, bool) { w, ok := v.Dataset(d.ID()); return w, w.RegistrationID, ok })
		if err != nil {
			return Dataset{}, err
		}
		if mine {
			return d, nil
		}
	}
	return Dataset{}, fmt.Errorf("register dataset %s in %s: lost %d registration races in a row; try again", d.Name, topic, maxAttempts)
}

// CheckModel validates m against the catalog v and the feature file cfg
// (nil: the catalog only) and fills in what it derives: Features (the
// training dataset's) and ServiceFeatures (the service's features as cfg
// lists them). Errors wrap ErrInvalid or ErrNotFound.
func CheckModel(m *Model, v *View, cfg *config.File) error {
	if err := ValidName("model", m.Name); err != nil {
		return err
	}
	if m.Version < 1 {
		return fmt.Errorf("%w: model %s: version %d: want a whole number >= 1", ErrInvalid, m.Name, m.Version)
	}
	if _, _, err := ParseRef(m.Dataset); err != nil {
		return fmt.Errorf("model %s dataset: %w", m.ID(), err)
	}
	ds, ok := v.Dataset(m.Dataset)
	if !ok {
		var have []string
		for _, d := range v.Datasets() {
			have = append(have, d.ID())
		}
		list := "none is registered (every backfill registers one)"
		if len(have) > 0 {
			list = "registered: " + strings.Join(have[:min(len(have), 10)], ", ")
		}
		return fmt.Errorf("model %s: dataset %s is %w; %s", m.ID(), m.Dataset, ErrNotFound, list)
	}
	if m.Service == "" {
		return fmt.Errorf("%w: model %s: no feature service (the service that serves its features)", ErrInvalid, m.ID())
	}
	m.ServiceFeatures = nil
	var svc *config.Service
	if cfg != nil {
		svc, _ = cfg.Service(m.Service)
	}
	switch {
	case svc != nil:
		m.ServiceFeatures = slices.Clone(svc.Features)
	case v.serviceInCatalog(m.Service):
	default:
		msg := "no registered dataset was built from it"
		if cfg != nil {
			msg = "not in " + cfg.Path + " (" + cfg.ServiceList(m.Service) + ") and " + msg
		}
		return fmt.Errorf("model %s: feature service %s is %w: %s", m.ID(), m.Service, ErrNotFound, msg)
	}
	if len(m.Metrics) == 0 {
		m.Metrics = nil // as decoded (omitempty), so that sameContent holds
	}
	for k, x := range m.Metrics {
		if !metricRE.MatchString(k) || math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: model %s: metric %s=%v: want a name and a finite number", ErrInvalid, m.ID(), k, x)
		}
	}
	m.Features = slices.Clone(ds.Features)
	return nil
}

// RegisterModel validates m (CheckModel) and registers it. created is false
// when the same name@version was registered before with the same content
// (idempotent: nothing is written and the registered model is returned); a
// different content fails with ErrModelExists, showing what differs. Races
// are settled as in RegisterDataset: the first record in the log wins.
func RegisterModel(ctx context.Context, cl *kgo.Client, topic string, cfg *config.File, m Model) (reg Model, created bool, err error) {
	v, err := readView(ctx, cl, topic)
	if err != nil {
		return Model{}, false, err
	}
	if err := CheckModel(&m, v, cfg); err != nil {
		return Model{}, false, err
	}
	if m.RegisteredAt.IsZero() {
		m.RegisteredAt = time.Now().UTC()
	}
	m.RegistrationID = registrationID()
	if old, ok := v.Model(m.ID()); ok {
		return settleModel(old, m)
	}
	_, won, mine, err := claim(ctx, cl, topic, KindModel, m.ID(), m.RegistrationID, m, ModelRecord,
		func(v *View) (Model, string, bool) { w, ok := v.Model(m.ID()); return w, w.RegistrationID, ok })
	if err != nil {
		return Model{}, false, err
	}
	if mine {
		return m, true, nil
	}
	return settleModel(won, m)
}

// claim writes x, the record of id (of kind k) with registration id regID,
// reads the registry topic back to its end and reports whether x is the
// first record of its key in the log (the one every View keeps): winner
// looks the key up in the view read and returns its registration id. A
// registrant that lost rewrites the winner's record, so that compaction,
// which keeps a key's last record, keeps the winner's. It returns the view
// read and the winner. RegisterDataset and RegisterModel settle their races
// with it.
func claim[T any](ctx context.Context, cl *kgo.Client, topic string, k Kind, id, regID string, x T,
	encode func(string, T) (*kgo.Record, error), winner func(*View) (T, string, bool),
) (v *View, won T, mine bool, err error) {
	var zero T
	rec, err := encode(topic, x)
	if err != nil {
		return nil, zero, false, err
	}
	if testHookBeforeWrite != nil {
		testHookBeforeWrite()
	}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return nil, zero, false, fmt.Errorf("register %s %s in %s: %w", k, id, topic, err)
	}
	if v, err = readView(ctx, cl, topic); err != nil {
		return nil, zero, false, fmt.Errorf("read back %s %s: %w", k, id, err)
	}
	won, wonID, ok := winner(v)
	if !ok {
		return nil, zero, false, fmt.Errorf("register %s %s in %s: the record written is not in the topic when read back (deleted meanwhile?)", k, id, topic)
	}
	if wonID == regID {
		return v, won, true, nil
	}
	repair, err := encode(topic, won)
	if err != nil {
		return nil, zero, false, err
	}
	if err := cl.ProduceSync(ctx, repair).FirstErr(); err != nil {
		return nil, zero, false, fmt.Errorf("restore the winning %s %s in %s: %w", k, id, topic, err)
	}
	return v, won, false, nil
}

// settleModel answers a registration of m when old is already registered.
func settleModel(old, m Model) (Model, bool, error) {
	if old.sameContent(m) {
		return old, false, nil
	}
	var diffs []string
	show := func(field string, was, now any) {
		if !reflect.DeepEqual(was, now) {
			diffs = append(diffs, fmt.Sprintf("%s: registered %v, now %v", field, was, now))
		}
	}
	show("dataset", old.Dataset, m.Dataset)
	show("service", old.Service, m.Service)
	show("service features", old.ServiceFeatures, m.ServiceFeatures)
	show("metrics", old.Metrics, m.Metrics)
	show("owner", old.Owner, m.Owner)
	show("description", old.Description, m.Description)
	show("limitations", old.Limitations, m.Limitations)
	show("uri", old.URI, m.URI)
	show("features", old.Features, m.Features)
	return Model{}, false, fmt.Errorf("%w: %s was registered %s by %s; a model version never changes: register the new content under a new --version\n  %s",
		ErrModelExists, m.ID(), old.RegisteredAt.Format(time.RFC3339), old.Actor, strings.Join(diffs, "\n  "))
}
