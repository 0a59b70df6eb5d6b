package connection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/vault"
)

// The secret of a connection is sealed with the connection's id as
// additional data: a ciphertext copied onto another connection's handle
// does not open there.

// putSecret seals plaintext into the vault: a new handle when handle is
// empty, else the existing one rewritten. It returns the handle.
func (s *Service) putSecret(ctx context.Context, tx db.Querier, handle, connID string, plaintext []byte) (string, error) {
	sealed, err := s.keys.Seal(plaintext, []byte(connID))
	if err != nil {
		return "", fmt.Errorf("seal secret: %w", err)
	}
	now := s.now()
	if handle == "" {
		handle = db.NewID()
		_, err = tx.ExecContext(ctx, `INSERT INTO credentials (handle, key_id, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`,
			handle, sealed.KeyID, sealed.Ciphertext, now)
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE credentials SET key_id = $1, ciphertext = $2, updated_at = $3 WHERE handle = $4`,
			sealed.KeyID, sealed.Ciphertext, now, handle)
	}
	if err != nil {
		return "", fmt.Errorf("store secret: %w", err)
	}
	return handle, nil
}

// Secret returns a connection's decrypted secret and the version of the
// credential it read. It is for server code that calls the app; it must
// never be sent to a browser, an API response, a log line or an email.
func (s *Service) Secret(ctx context.Context, connID string) ([]byte, int64, error) {
	return s.secret(ctx, s.db.Read(), connID)
}

func (s *Service) secret(ctx context.Context, q db.Querier, connID string) ([]byte, int64, error) {
	var keyID string
	var ct []byte
	var version int64
	err := q.QueryRowContext(ctx, `SELECT c.key_id, c.ciphertext, n.credential_version FROM connections n
		JOIN credentials c ON c.handle = n.secret_handle WHERE n.id = $1`, connID).Scan(&keyID, &ct, &version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, apperr.ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read secret: %w", err)
	}
	pt, err := s.keys.Open(vault.Sealed{KeyID: keyID, Ciphertext: ct}, []byte(connID))
	if err != nil {
		return nil, 0, fmt.Errorf("open secret of connection %s: %w", connID, err)
	}
	return pt, version, nil
}

// StoreSecret replaces a connection's secret (a refreshed or reconnected
// credential) and bumps its credential version, in the caller's
// transaction when tx is given.
func (s *Service) StoreSecret(ctx context.Context, connID string, plaintext []byte) (int64, error) {
	var version int64
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		var err error
		version, err = s.storeSecret(ctx, tx, connID, plaintext)
		return err
	})
	return version, err
}

func (s *Service) storeSecret(ctx context.Context, tx db.Querier, connID string, plaintext []byte) (int64, error) {
	var handle sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT secret_handle FROM connections WHERE id = $1`, connID).Scan(&handle)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, apperr.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("read handle: %w", err)
	}
	h, err := s.putSecret(ctx, tx, handle.String, connID, plaintext)
	if err != nil {
		return 0, err
	}
	var version int64
	err = tx.QueryRowContext(ctx, `UPDATE connections SET secret_handle = $1, credential_version = credential_version + 1, updated_at = $2
		WHERE id = $3 RETURNING credential_version`, h, s.now(), connID).Scan(&version)
	if err != nil {
		return 0, fmt.Errorf("bump credential version: %w", err)
	}
	return version, nil
}

// RotateKeys re-encrypts every secret not sealed with the current key, in
// batches, each batch in its own transaction. It returns how many it
// re-encrypted. Run it after making a new key current while the old one is
// still in the keyring; afterwards the old key can be dropped.
func (s *Service) RotateKeys(ctx context.Context) (int, error) {
	total := 0
	for {
		n := 0
		err := s.db.InTx(ctx, func(tx db.Querier) error {
			rows, err := tx.QueryContext(ctx, `SELECT c.handle, c.key_id, c.ciphertext, COALESCE(n.id, '') FROM credentials c
				LEFT JOIN connections n ON n.secret_handle = c.handle WHERE c.key_id <> $1 ORDER BY c.handle LIMIT 500`, s.keys.Current.ID)
			if err != nil {
				return fmt.Errorf("read secrets to rotate: %w", err)
			}
			type item struct {
				handle, connID string
				sealed         vault.Sealed
			}
			var items []item
			for rows.Next() {
				var it item
				if err := rows.Scan(&it.handle, &it.sealed.KeyID, &it.sealed.Ciphertext, &it.connID); err != nil {
					rows.Close()
					return fmt.Errorf("scan secret: %w", err)
				}
				items = append(items, it)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("read secrets to rotate: %w", err)
			}
			for _, it := range items {
				pt, err := s.keys.Open(it.sealed, []byte(it.connID))
				if err != nil {
					return fmt.Errorf("open secret %s: %w", it.handle, err)
				}
				if _, err := s.putSecret(ctx, tx, it.handle, it.connID, pt); err != nil {
					return err
				}
			}
			n = len(items)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n == 0 {
			return total, nil
		}
	}
}
