package connection

import "context"

// StatusOf reads a connection's status whatever its workspace: for server
// work (a polling trigger deciding whether it may call the app), never for
// a request. A missing connection is apperr.ErrNotFound.
func (s *Service) StatusOf(ctx context.Context, id string) (Status, error) {
	c, err := s.byID(ctx, id)
	if err != nil {
		return "", err
	}
	return c.Status, nil
}
