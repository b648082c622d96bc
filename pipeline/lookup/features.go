package lookup

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
)

// featureInfo is what a lookup needs of one feature version, built once in
// New so that resolving a request allocates and formats nothing.
type featureInfo struct {
	def *config.Feature
	idx int // position in featureIndex.list
	// warning is the response warning of a deprecated version, else "".
	warning string
	// warned is set once the deprecated version's first lookup is logged.
	warned atomic.Bool
}

// pickedFeature is one requested feature as a request resolved it. warming
// is read from the registry once per request (in pick), so that the version
// chosen and the WARMING_UP status of every key's value agree.
type pickedFeature struct {
	*featureInfo
	warming bool
}

// featureIndex holds every feature version of the config by id, and the
// versions of each name in the order a bare name prefers them.
type featureIndex struct {
	byID   map[string]*featureInfo
	byName map[string][]*featureInfo
	list   []*featureInfo // in file order; featureInfo.idx indexes it
}

// newFeatureIndex builds the index of cfg's features. The preference order
// of a name's versions is config.File.Feature's rule: versions that are not
// deprecated first, then the newest first (ties in file order), so that the
// first is what config.File.Feature resolves the bare name to.
func newFeatureIndex(cfg *config.File) featureIndex {
	x := featureIndex{byID: map[string]*featureInfo{}, byName: map[string][]*featureInfo{}}
	for _, f := range cfg.Features {
		fi := &featureInfo{def: f, idx: len(x.list)}
		if f.Deprecated {
			fi.warning = deprecationWarning(f)
		}
		x.list = append(x.list, fi)
		x.byID[f.ID] = fi
		x.byName[f.Name] = append(x.byName[f.Name], fi)
	}
	for _, vs := range x.byName {
		slices.SortStableFunc(vs, func(a, b *featureInfo) int {
			if a.def.Deprecated != b.def.Deprecated {
				if a.def.Deprecated {
					return 1
				}
				return -1
			}
			return cmp.Compare(b.def.Version, a.def.Version)
		})
	}
	return x
}

// deprecationWarning is the response warning of deprecated version f:
// "feature a@1 is deprecated; use a@2 instead (sunset 2027-01-31)", with
// the replacement and the sunset when the feature file names them.
func deprecationWarning(f *config.Feature) string {
	w := fmt.Sprintf("feature %s is deprecated", f.ID)
	if f.ReplacedBy != "" {
		w += fmt.Sprintf("; use %s instead", f.ReplacedBy)
	}
	if !f.Sunset.IsZero() {
		w += fmt.Sprintf(" (sunset %s)", f.Sunset.Format(time.DateOnly))
	}
	return w
}

// pick resolves a feature reference: "name@version" exactly; a bare name to
// the first of its versions, in preference order, that is ready (not
// warming up), else to the first (what config.File.Feature picks). It
// reads the registry once per version it considers; warming is the chosen
// version's state. Unknown references return config.File.Feature's error,
// which suggests names or lists versions.
func (s *Service) pick(ref string) (pickedFeature, error) {
	if vs, ok := s.feats.byName[ref]; ok {
		for _, fi := range vs {
			if s.versionReady(fi.def) {
				return pickedFeature{fi, false}, nil
			}
		}
		return pickedFeature{vs[0], true}, nil
	}
	fi, ok := s.feats.byID[ref]
	if !ok && strings.Contains(ref, "@") { // another spelling of a version, such as name@01
		def, err := s.o.Config.Feature(ref)
		if err != nil {
			return pickedFeature{}, err
		}
		fi, ok = s.feats.byID[def.ID]
	}
	if !ok {
		_, err := s.o.Config.Feature(ref)
		if err == nil {
			err = fmt.Errorf("%w %q", config.ErrUnknownFeature, ref)
		}
		return pickedFeature{}, err
	}
	return pickedFeature{fi, !s.versionReady(fi.def)}, nil
}

// versionReady reports whether feature version def is ready (not warming
// up): a derived feature is ready when every input is.
func (s *Service) versionReady(def *config.Feature) bool {
	if def.Derived == nil {
		return s.reg.Ready(def.ID)
	}
	for _, in := range def.Derived.Inputs {
		if !s.versionReady(in) {
			return false
		}
	}
	return true
}
