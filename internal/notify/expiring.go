package notify

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"taskjuice/internal/db"
)

// WarnBefore is how long before a refresh token's known end of life the
// warning is raised (or a fifth of the lifetime, for shorter ones).
const WarnBefore = 7 * 24 * time.Hour

// Expiring raises a warning for every active connection whose app declares
// a refresh-token lifetime that ends soon, so someone can reconnect ahead
// of the break, and resolves warnings that no longer apply (reconnected,
// renewed, or already broken). It returns how many warnings it raised.
func (s *Service) Expiring(ctx context.Context) (int, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT c.id, c.workspace_id, c.app_key, c.label, c.status, c.refresh_issued_at, c.refresh_used_at, w.slug
		FROM connections c JOIN workspaces w ON w.id = c.workspace_id WHERE c.refresh_issued_at IS NOT NULL`)
	if err != nil {
		return 0, fmt.Errorf("read connections: %w", err)
	}
	type conn struct {
		id, ws, app, label, status, slug string
		issued                           time.Time
		used                             sql.NullTime
	}
	var list []conn
	for rows.Next() {
		var c conn
		if err := rows.Scan(&c.id, &c.ws, &c.app, &c.label, &c.status, &c.issued, &c.used, &c.slug); err != nil {
			rows.Close()
			return 0, err
		}
		list = append(list, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	now := s.now()
	raised := 0
	for _, c := range list {
		app, ok := s.catalog.App(c.app)
		var ends time.Time
		var soon bool
		if ok && app.RefreshLifetime != nil {
			if at, known := app.RefreshLifetime.ExpiresAt(c.issued, c.used.Time); known {
				lead := WarnBefore
				if life := at.Sub(c.issued); life/5 < lead {
					lead = life / 5
				}
				ends, soon = at, c.status == "active" && now.After(at.Add(-lead))
			}
		}
		if !soon {
			if _, err := s.db.Write().ExecContext(ctx, `UPDATE notifications SET resolved_at = $1 WHERE connection_id = $2 AND kind = 'expiring' AND resolved_at IS NULL`, now, c.id); err != nil {
				return raised, fmt.Errorf("resolve warning: %w", err)
			}
			continue
		}
		_, err := s.db.Write().ExecContext(ctx, `INSERT INTO notifications (id, workspace_id, kind, severity, title, body, link, connection_id, created_at)
			VALUES ($1, $2, 'expiring', 'warning', $3, $4, $5, $6, $7)`,
			db.NewID(), c.ws, app.Name+" connection expires soon",
			fmt.Sprintf("%s's refresh token for the %q connection stops working around %s. Reconnect it before then to avoid a break.",
				app.Name, c.label, ends.UTC().Format("2 Jan 2006 15:04 UTC")),
			"/"+c.slug+"/connections/"+c.id, c.id, now)
		if db.IsUniqueViolation(err) {
			continue // already warned
		}
		if err != nil {
			return raised, fmt.Errorf("raise warning: %w", err)
		}
		raised++
	}
	return raised, nil
}
