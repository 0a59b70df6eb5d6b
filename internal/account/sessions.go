package account

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"taskjuice/internal/apperr"
)

// SessionInfo is one of a person's signed-in sessions, as they see it in
// their list: the device (its browser's User-Agent), the address, when it
// was last used. ID is opaque: the first characters of the stored hash of
// the session's secret, which tells nothing of the secret.
type SessionInfo struct {
	ID         string    `json:"id"`
	UserAgent  string    `json:"userAgent"`
	IP         string    `json:"ip"`
	CreatedAt  time.Time `json:"createdAt"`
	LastSeenAt time.Time `json:"lastSeenAt"`
	// Current is the session the list was asked from.
	Current bool `json:"current"`
}

const sessionIDLen = 16

var sessionID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// Sessions lists a person's active sessions, the most recently used
// first; current is the asking session's secret (it is marked).
func (s *Service) Sessions(ctx context.Context, userID, current string) ([]SessionInfo, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT token_hash, user_agent, ip, created_at, last_seen_at FROM sessions
		WHERE user_id = $1 AND expires_at > $2 ORDER BY last_seen_at DESC`, userID, s.now())
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	mine := hashToken(current)
	var out []SessionInfo
	for rows.Next() {
		var si SessionInfo
		var h string
		if err := rows.Scan(&h, &si.UserAgent, &si.IP, &si.CreatedAt, &si.LastSeenAt); err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		si.ID, si.Current = h[:sessionIDLen], h == mine
		out = append(out, si)
	}
	return out, rows.Err()
}

// EndSession signs one of a person's sessions out. Another person's
// session, or none, is not found.
func (s *Service) EndSession(ctx context.Context, userID, id string) error {
	if !sessionID.MatchString(id) {
		return apperr.NotFound("There is no such session.")
	}
	res, err := s.db.Write().ExecContext(ctx, `DELETE FROM sessions WHERE user_id = $1 AND token_hash LIKE $2`, userID, id+"%")
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.NotFound("There is no such session.")
	}
	return nil
}

// EndAllSessions signs a person out everywhere, and says how many
// sessions ended.
func (s *Service) EndAllSessions(ctx context.Context, userID string) (int, error) {
	res, err := s.db.Write().ExecContext(ctx, `DELETE FROM sessions WHERE user_id = $1`, userID)
	if err != nil {
		return 0, fmt.Errorf("end sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
