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

// ExternalAccountOf reads the id of the external account a connection's
// credential belongs to (Slack: the team id), whatever its workspace: for
// server work such as routing an app's deliveries, never for a request.
func (s *Service) ExternalAccountOf(ctx context.Context, id string) (string, error) {
	c, err := s.byID(ctx, id)
	if err != nil {
		return "", err
	}
	return c.ExternalAccountID, nil
}
