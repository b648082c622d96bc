package lookup

import (
	"net/http"
	"strings"
)

// requestedFeatures returns the feature references a request asks for: its
// own list, or, when it names a feature service, exactly the service's
// features as the feature file lists them ("name@version", or a bare name
// that pick resolves to the newest ready version, reported in each value's
// version). A request may name features or a service, not both; a service
// must serve the request's entity.
//
// Cost: a linear scan of the config's services (a handful) with no
// allocation; the returned slice is the config's and must not be modified.
func (s *Service) requestedFeatures(info *entityInfo, service string, features []string) ([]string, error) {
	if service == "" {
		return features, nil
	}
	if len(features) > 0 {
		return nil, badRequest("conflicting_features",
			`give either "feature_service" or "features", not both: feature service %q already names its features`, service)
	}
	svc, err := s.o.Config.Service(service)
	if err != nil {
		return nil, &apiError{http.StatusNotFound, "unknown_feature_service", err.Error()}
	}
	if svc.Entity != info.name {
		return nil, badRequest("wrong_entity", "feature service %s serves entity %s, not %s (its features: %s)",
			svc.Name, svc.Entity, info.name, strings.Join(svc.Features, ", "))
	}
	return svc.Features, nil
}
