package connection

import (
	"context"
	"maps"
)

// FieldsOf reads a connection's non-secret fields (e.g. Freshdesk's
// subdomain) whatever its workspace: for server work (a polling trigger
// building its app's address), never for a request. A missing connection
// is apperr.ErrNotFound.
func (s *Service) FieldsOf(ctx context.Context, id string) (map[string]string, error) {
	c, err := s.byID(ctx, id)
	if err != nil {
		return nil, err
	}
	return maps.Clone(c.Metadata), nil
}
