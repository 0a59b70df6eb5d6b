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
	return s.vault.Put(ctx, tx, handle, vault.KindConnection, connID, plaintext)
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
	pt, err := s.vault.Unseal(vault.Sealed{KeyID: keyID, Ciphertext: ct}, connID)
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
