package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The one codec of the registry (catalog) topic: every record kind's key
// layout and value encoding is here, and nothing else builds or parses the
// topic's records.
//
//	key                                       value (JSON)   kind
//	def/<name@version>                        Definition     KindDefinition
//	status/<name@version>/<topic>/<partition> Status         KindStatus
//	dataset/<name@version>                    Dataset        KindDataset
//	model/<name@version>                      Model          KindModel
//	service/<name>                            Service        KindService
//	meta/<name@version>                       FeatureMeta    KindMeta
//
// A nil value is a tombstone (compaction deletes the key). Compatibility:
// a reader skips a record of a kind it does not know (DecodeRecord returns
// ErrUnknownKind, View.Apply ignores it), so a newer writer's kinds never
// stop an older reader; the binaries released before datasets and models
// existed skip dataset/ and model/ records the same way, and those released
// before services and feature metadata were recorded skip service/ and
// meta/ records. Definitions, datasets and models are immutable (the first
// record of a key wins); services and metadata change without a version
// (the last record of a key wins). New fields are
// added to values with omitempty, so old records still decode.

// Kind is a record kind of the registry topic.
type Kind string

// Record kinds.
const (
	KindDefinition Kind = "def"
	KindStatus     Kind = "status"
	KindDataset    Kind = "dataset"
	KindModel      Kind = "model"
	KindService    Kind = "service"
	KindMeta       Kind = "meta"
)

// ErrUnknownKind is returned (wrapped) by DecodeRecord for a key of a kind
// this version does not know: readers skip such records.
var ErrUnknownKind = errors.New("unknown registry record kind")

// Record is one decoded registry record. Exactly one of Definition, Status,
// Dataset, Model, Service and Meta is set, per Kind, unless Tombstone.
type Record struct {
	Kind Kind
	// ID is the object id: name@version for definitions, datasets, models
	// and feature metadata, name@version/topic/partition for statuses, the
	// name for services.
	ID         string
	Tombstone  bool
	Definition *Definition
	Status     *Status
	Dataset    *Dataset
	Model      *Model
	Service    *Service
	Meta       *FeatureMeta
}

func recordKey(k Kind, id string) []byte { return []byte(string(k) + "/" + id) }

func statusID(feature, topic string, p int32) string {
	return feature + "/" + topic + "/" + strconv.Itoa(int(p))
}

// DecodeRecord decodes one record of the registry topic. It fails on a
// malformed key or value, and with ErrUnknownKind for a kind it does not
// know.
func DecodeRecord(key, value []byte) (Record, error) {
	k := string(key)
	i := strings.IndexByte(k, '/')
	if i <= 0 || i == len(k)-1 {
		return Record{}, fmt.Errorf("registry record %q: malformed key (want kind/id)", k)
	}
	r := Record{Kind: Kind(k[:i]), ID: k[i+1:], Tombstone: value == nil}
	var dst any
	switch r.Kind {
	case KindDefinition:
		r.Definition = &Definition{}
		dst = r.Definition
	case KindStatus:
		if strings.Count(r.ID, "/") < 2 {
			return Record{}, fmt.Errorf("registry record %q: malformed status key (want status/name@version/topic/partition)", k)
		}
		r.Status = &Status{}
		dst = r.Status
	case KindDataset:
		r.Dataset = &Dataset{}
		dst = r.Dataset
	case KindModel:
		r.Model = &Model{}
		dst = r.Model
	case KindService:
		r.Service = &Service{}
		dst = r.Service
	case KindMeta:
		r.Meta = &FeatureMeta{}
		dst = r.Meta
	default:
		return Record{}, fmt.Errorf("registry record %q: %w %q", k, ErrUnknownKind, r.Kind)
	}
	if r.Tombstone {
		r.Definition, r.Status, r.Dataset, r.Model, r.Service, r.Meta = nil, nil, nil, nil, nil, nil
		return r, nil
	}
	if err := json.Unmarshal(value, dst); err != nil {
		return Record{}, fmt.Errorf("registry record %s: %w", k, err)
	}
	return r, nil
}

func encode(topic string, k Kind, id string, v any) (*kgo.Record, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode registry record %s/%s: %w", k, id, err)
	}
	return &kgo.Record{Topic: topic, Key: recordKey(k, id), Value: b}, nil
}

// DefinitionRecord returns the registry record of d.
func DefinitionRecord(topic string, d Definition) (*kgo.Record, error) {
	return encode(topic, KindDefinition, d.Feature, d)
}

// StatusRecord returns the registry record of s.
func StatusRecord(topic string, s Status) (*kgo.Record, error) {
	return encode(topic, KindStatus, statusID(s.Feature, s.Topic, s.Partition), s)
}

// DatasetRecord returns the registry record of d (key dataset/<d.ID()>).
func DatasetRecord(topic string, d Dataset) (*kgo.Record, error) {
	return encode(topic, KindDataset, d.ID(), d)
}

// ModelRecord returns the registry record of m (key model/<m.ID()>).
func ModelRecord(topic string, m Model) (*kgo.Record, error) {
	return encode(topic, KindModel, m.ID(), m)
}

// ServiceRecord returns the registry record of s (key service/<s.Name>).
func ServiceRecord(topic string, s Service) (*kgo.Record, error) {
	return encode(topic, KindService, s.Name, s)
}

// MetaRecord returns the registry record of m (key meta/<m.Feature>).
func MetaRecord(topic string, m FeatureMeta) (*kgo.Record, error) {
	return encode(topic, KindMeta, m.Feature, m)
}
