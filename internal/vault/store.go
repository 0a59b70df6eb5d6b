package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"taskjuice/internal/db"
)

// Kind says what a sealed value is, for counting and messages only; how it
// is sealed and rotated does not depend on it.
type Kind string

// The kinds of secret in the vault.
const (
	KindConnection    Kind = "connection"
	KindModelKey      Kind = "model_key"
	KindWebhookSecret Kind = "webhook_secret"
	KindPKCEVerifier  Kind = "oauth_verifier"
	KindMFASecret     Kind = "mfa_secret"
)

// Label names a kind in plural for people.
func (k Kind) Label() string {
	switch k {
	case KindConnection:
		return "connection credentials"
	case KindModelKey:
		return "model provider keys"
	case KindWebhookSecret:
		return "webhook secrets"
	case KindPKCEVerifier:
		return "OAuth verifiers in flight"
	case KindMFASecret:
		return "MFA secrets"
	}
	return "other secrets (" + string(k) + ")"
}

// ErrNoSecret means a handle names no sealed value.
var ErrNoSecret = errors.New("vault: no such secret")

// Store is the one table of sealed values (credentials). Every secret of
// every domain is put here under a handle, sealed with the keyring's
// current key and its owner's id as additional data; the owner id is kept
// beside the ciphertext so Rotate can re-encrypt any row without knowing
// whose it is. Domain tables keep only the handle.
type Store struct {
	db   *db.DB
	keys Keyring
	now  func() time.Time
}

// NewStore returns the store over d's credentials table.
func NewStore(d *db.DB, keys Keyring) *Store {
	return &Store{db: d, keys: keys, now: db.Now}
}

// Keys is the keyring the store seals with.
func (s *Store) Keys() Keyring { return s.keys }

// Put seals plaintext for owner and stores it in q: under a new handle when
// handle is empty, else replacing the value at handle. It returns the
// handle.
func (s *Store) Put(ctx context.Context, q db.Querier, handle string, kind Kind, owner string, plaintext []byte) (string, error) {
	sealed, err := s.keys.Seal(plaintext, []byte(owner))
	if err != nil {
		return "", fmt.Errorf("seal %s: %w", kind, err)
	}
	now := s.now()
	if handle == "" {
		handle = db.NewID()
		_, err = q.ExecContext(ctx, `INSERT INTO credentials (handle, key_id, ciphertext, owner, kind, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $6)`, handle, sealed.KeyID, sealed.Ciphertext, owner, string(kind), now)
		if err != nil {
			return "", fmt.Errorf("store %s: %w", kind, err)
		}
		return handle, nil
	}
	res, err := q.ExecContext(ctx, `UPDATE credentials SET key_id = $1, ciphertext = $2, owner = $3, kind = $4, updated_at = $5 WHERE handle = $6`,
		sealed.KeyID, sealed.Ciphertext, owner, string(kind), now, handle)
	if err != nil {
		return "", fmt.Errorf("store %s: %w", kind, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return "", fmt.Errorf("store %s: %w", kind, err)
	} else if n == 0 {
		return "", ErrNoSecret
	}
	return handle, nil
}

// Open reads the value at handle and opens it for owner. The owner is the
// caller's, not the row's: a handle pointed at from another owner's row
// does not open there.
func (s *Store) Open(ctx context.Context, q db.Querier, handle, owner string) ([]byte, error) {
	var sealed Sealed
	err := q.QueryRowContext(ctx, `SELECT key_id, ciphertext FROM credentials WHERE handle = $1`, handle).Scan(&sealed.KeyID, &sealed.Ciphertext)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoSecret
	}
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	return s.Unseal(sealed, owner)
}

// Unseal opens a value its caller read from the table in a query of its
// own (a join on the hot path).
func (s *Store) Unseal(sealed Sealed, owner string) ([]byte, error) {
	return s.keys.Open(sealed, []byte(owner))
}

// Delete removes the value at handle; a missing one is no error.
func (s *Store) Delete(ctx context.Context, q db.Querier, handle string) error {
	if handle == "" {
		return nil
	}
	if _, err := q.ExecContext(ctx, `DELETE FROM credentials WHERE handle = $1`, handle); err != nil {
		return fmt.Errorf("delete secret: %w", err)
	}
	return nil
}

// Rotation is what Rotate did.
type Rotation struct {
	// Resealed counts the values re-encrypted under the current key, by kind.
	Resealed map[Kind]int
	// Unopenable lists handles no key of the keyring opens (wrong owner or
	// tampered); they stay as they were, and keep their key needed.
	Unopenable []string
}

// Total is the number of values re-encrypted.
func (r Rotation) Total() int {
	n := 0
	for _, c := range r.Resealed {
		n += c
	}
	return n
}

const rotateBatch = 500

// Rotate re-encrypts every value not sealed with the current key, in
// batches of one transaction each. It is the one rotation loop: whatever a
// domain put in the store is covered. A value it cannot open is skipped
// and reported, never left to stop the others.
func (s *Store) Rotate(ctx context.Context) (Rotation, error) {
	out := Rotation{Resealed: map[Kind]int{}}
	after := ""
	for {
		n := 0
		err := s.db.InTx(ctx, func(tx db.Querier) error {
			rows, err := tx.QueryContext(ctx, `SELECT handle, key_id, ciphertext, owner, kind FROM credentials
				WHERE key_id <> $1 AND handle > $2 ORDER BY handle LIMIT $3`, s.keys.Current.ID, after, rotateBatch)
			if err != nil {
				return fmt.Errorf("read secrets to rotate: %w", err)
			}
			type item struct {
				handle, owner string
				kind          Kind
				sealed        Sealed
			}
			var items []item
			for rows.Next() {
				var it item
				if err := rows.Scan(&it.handle, &it.sealed.KeyID, &it.sealed.Ciphertext, &it.owner, &it.kind); err != nil {
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
				after = it.handle
				pt, err := s.keys.Open(it.sealed, []byte(it.owner))
				if err != nil {
					out.Unopenable = append(out.Unopenable, it.handle)
					continue
				}
				sealed, err := s.keys.Seal(pt, []byte(it.owner))
				if err != nil {
					return fmt.Errorf("seal %s: %w", it.kind, err)
				}
				// Compare-and-set: a value rewritten meanwhile (a refresh in
				// a running server) is newer than ours and already current.
				res, err := tx.ExecContext(ctx, `UPDATE credentials SET key_id = $1, ciphertext = $2, updated_at = $3
					WHERE handle = $4 AND key_id = $5 AND ciphertext = $6`,
					sealed.KeyID, sealed.Ciphertext, s.now(), it.handle, it.sealed.KeyID, it.sealed.Ciphertext)
				if err != nil {
					return fmt.Errorf("store %s: %w", it.kind, err)
				}
				if n, err := res.RowsAffected(); err != nil {
					return fmt.Errorf("store %s: %w", it.kind, err)
				} else if n == 1 {
					out.Resealed[it.kind]++
				}
			}
			n = len(items)
			return nil
		})
		if err != nil {
			return out, err
		}
		if n < rotateBatch {
			return out, nil
		}
	}
}

// Remaining counts values sealed under a key other than the current one.
type Remaining struct {
	KeyID string
	Kind  Kind
	Count int
}

// NotCurrent counts, by key and kind, the values not sealed with the
// current key: while any is listed, the key it names is still needed.
func (s *Store) NotCurrent(ctx context.Context) ([]Remaining, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT key_id, kind, count(*) FROM credentials WHERE key_id <> $1 GROUP BY key_id, kind`, s.keys.Current.ID)
	if err != nil {
		return nil, fmt.Errorf("count secrets under old keys: %w", err)
	}
	defer rows.Close()
	var out []Remaining
	for rows.Next() {
		var r Remaining
		if err := rows.Scan(&r.KeyID, &r.Kind, &r.Count); err != nil {
			return nil, fmt.Errorf("count secrets under old keys: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count secrets under old keys: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].KeyID != out[j].KeyID {
			return out[i].KeyID < out[j].KeyID
		}
		return out[i].Kind < out[j].Kind
	})
	return out, nil
}
