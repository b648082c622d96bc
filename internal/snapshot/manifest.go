package snapshot

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// FormatVersion is the manifest format this package writes and the only one
// it reads. A manifest of another version is reported as a Problem and
// skipped, never guessed at.
const FormatVersion = 1

// ManifestName is the name of the manifest inside a snapshot: the object
// "<id>/manifest.json". It is written last; a snapshot without one does not
// exist.
const ManifestName = "manifest.json"

// idTimeLayout is the time prefix of an ID: fixed width, so IDs sort by time.
const idTimeLayout = "20060102T150405.000Z"

// Manifest describes one immutable snapshot. It is stored as indented JSON
// (human-readable) with a "format" field holding FormatVersion.
type Manifest struct {
	// ID names the snapshot: its objects are "<ID>/...". Sortable by time,
	// see NewID. Write generates one when empty.
	ID string `json:"id"`
	// CreatedAt is when the snapshot was taken. Write sets it when zero.
	CreatedAt time.Time `json:"created_at"`
	// Worker is who wrote it (client/instance id).
	Worker string `json:"worker"`
	// Features are the feature versions whose state the snapshot holds.
	Features []FeatureRef `json:"features"`
	// Sources are the source partitions the snapshot covers, one SST each.
	// Write fills them from its PartitionData.
	Sources []SourcePartition `json:"sources"`
	// FeatureLog holds, per feature-log partition, the offset the state
	// corresponds to.
	FeatureLog []LogPartition `json:"feature_log"`
	// FeatureLogLayout is the feature-log key layout the state's tiles were
	// published under (keys.FeatureLogLayout when written); 0 in snapshots
	// of featurepipes before it was recorded (layout 1, without the source
	// partition). A worker restoring a partition from an older layout
	// republishes its tiles.
	FeatureLogLayout int `json:"feature_log_layout,omitempty"`
	// Files lists every file of the snapshot with its size and checksum.
	// Write fills it.
	Files []FileRef `json:"files"`
}

// FeatureRef identifies one feature version and its definition.
type FeatureRef struct {
	ID   string `json:"id"`   // "name@version"
	Hash string `json:"hash"` // hash of the definition
}

// SourcePartition is the part of a snapshot that covers one source partition.
type SourcePartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// NextOffset is the next source offset to apply after loading: every
	// record before it is in the state, none after it.
	NextOffset int64 `json:"next_offset"`
	// MaxEventTime is the highest event time (ms) in the state.
	MaxEventTime int64 `json:"max_event_time"`
	// File is the SST holding the partition's state keys, a name in Files.
	File string `json:"file"`
}

// TopicPartition returns the partition's identity.
func (sp SourcePartition) TopicPartition() TopicPartition {
	return TopicPartition{Topic: sp.Topic, Partition: sp.Partition}
}

// LogPartition is a feature-log partition and the offset the snapshot's state
// corresponds to.
type LogPartition struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// FileRef is one file of a snapshot. Name is relative to the snapshot: the
// object is "<ID>/<Name>".
type FileRef struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lower-case hex
}

// TopicPartition identifies a source partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string {
	return tp.Topic + "/" + strconv.FormatInt(int64(tp.Partition), 10)
}

// Object returns the backend object name of a file of the snapshot:
// "<ID>/<name>".
func (m *Manifest) Object(name string) string { return m.ID + "/" + name }

// Source returns the snapshot's part covering tp.
func (m *Manifest) Source(tp TopicPartition) (SourcePartition, bool) {
	for _, sp := range m.Sources {
		if sp.Topic == tp.Topic && sp.Partition == tp.Partition {
			return sp, true
		}
	}
	return SourcePartition{}, false
}

func (m *Manifest) fileRef(name string) (FileRef, bool) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, true
		}
	}
	return FileRef{}, false
}

// NewID returns a snapshot id "<UTC time, ms>-<worker>-<random>", e.g.
// "20261125T131500.123Z-worker-1-9f3a0c4e". IDs sort by time (to the
// millisecond); the random part keeps ids of one worker within a millisecond
// distinct. Characters of worker outside [A-Za-z0-9._-] become '_'.
func NewID(worker string, t time.Time) string {
	w := strings.Map(func(r rune) rune {
		if idChar(r) {
			return r
		}
		return '_'
	}, worker)
	if w == "" {
		w = "_"
	}
	if len(w) > 64 {
		w = w[:64]
	}
	return t.UTC().Format(idTimeLayout) + "-" + w + "-" + randHex(4)
}

func idChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// checkID accepts ids usable as one object-name element.
func checkID(id string) error {
	if id == "" || len(id) > 200 || strings.HasPrefix(id, ".") || strings.IndexFunc(id, func(r rune) bool { return !idChar(r) }) >= 0 {
		return fmt.Errorf("invalid snapshot id %q: want 1-200 characters of [A-Za-z0-9._-], not starting with '.'", id)
	}
	return nil
}

// idTime parses the time prefix of an id made by NewID.
func idTime(id string) (time.Time, bool) {
	if len(id) < len(idTimeLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(idTimeLayout, id[:len(idTimeLayout)])
	return t, err == nil
}

// sstName is the file name of a source partition's SST: "<topic>-<partition>.sst".
func sstName(topic string, partition int32) string {
	return topic + "-" + strconv.FormatInt(int64(partition), 10) + ".sst"
}

// kafkaTopic matches legal Kafka topic names, which are also safe file names.
var kafkaTopic = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)

func checkTopicPartition(topic string, partition int32) error {
	if !kafkaTopic.MatchString(topic) || topic == "." || topic == ".." {
		return fmt.Errorf("invalid topic %q", topic)
	}
	if partition < 0 {
		return fmt.Errorf("topic %s: negative partition %d", topic, partition)
	}
	return nil
}

// manifestJSON is the stored form: the format version, then the manifest.
type manifestJSON struct {
	Format int `json:"format"`
	*Manifest
}

func encodeManifest(m *Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(manifestJSON{Format: FormatVersion, Manifest: m}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// decodeManifest parses and validates the manifest stored under id.
func decodeManifest(id string, b []byte) (*Manifest, error) {
	corrupt := func(format string, args ...any) error {
		return &CorruptError{ID: id, File: ManifestName, Err: fmt.Errorf(format, args...)}
	}
	var f manifestJSON
	f.Manifest = new(Manifest)
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&f); err != nil {
		return nil, corrupt("parse: %w", err)
	}
	if f.Format != FormatVersion {
		return nil, corrupt("format version %d, this build reads %d", f.Format, FormatVersion)
	}
	m := f.Manifest
	if m.ID != id {
		return nil, corrupt("id %q does not match its location %q", m.ID, id)
	}
	if err := m.validate(); err != nil {
		return nil, &CorruptError{ID: id, File: ManifestName, Err: err}
	}
	return m, nil
}

// validate checks that the manifest is self-consistent: every source names a
// listed file, no duplicates, well-formed checksums.
func (m *Manifest) validate() error {
	if err := checkID(m.ID); err != nil {
		return err
	}
	files := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if err := checkName(f.Name); err != nil || strings.Contains(f.Name, "/") || f.Name == ManifestName {
			return fmt.Errorf("invalid file name %q", f.Name)
		}
		if files[f.Name] {
			return fmt.Errorf("file %s listed twice", f.Name)
		}
		files[f.Name] = true
		if f.Size < 0 {
			return fmt.Errorf("file %s: negative size %d", f.Name, f.Size)
		}
		if sum, err := hex.DecodeString(f.SHA256); err != nil || len(sum) != 32 {
			return fmt.Errorf("file %s: malformed sha256 %q", f.Name, f.SHA256)
		}
	}
	seen := make(map[TopicPartition]bool, len(m.Sources))
	for _, sp := range m.Sources {
		if err := checkTopicPartition(sp.Topic, sp.Partition); err != nil {
			return err
		}
		tp := sp.TopicPartition()
		if seen[tp] {
			return fmt.Errorf("source %s listed twice", tp)
		}
		seen[tp] = true
		if !files[sp.File] {
			return fmt.Errorf("source %s: file %q not listed in files", tp, sp.File)
		}
	}
	return nil
}
