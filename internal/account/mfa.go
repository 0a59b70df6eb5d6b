package account

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/vault"
)

// Multi-factor authentication for staff: TOTP codes of 6 digits every 30
// seconds, plus single-use backup codes. Clients are never enrolled.
const (
	MFAIssuer = "TaskJuice"
	// MFAChallengeTTL is how long a sign-in waits for its code after the
	// password.
	MFAChallengeTTL = 5 * time.Minute
	// maxWrongCodes ends a waiting sign-in: the password must be given
	// again.
	maxWrongCodes   = 5
	BackupCodeCount = 10
)

// Messages of the MFA pages and the sign-in's code step.
const (
	MsgCodeRequired  = "Enter the 6-digit code from your authenticator app to finish signing in."
	MsgBadCode       = "That code is not right. Enter the current 6-digit code from your authenticator app, or one of your backup codes."
	MsgSigninExpired = "Your sign-in has expired. Enter your email and password again."
	MsgMFAForStaff   = "Multi-factor authentication is for agency staff."
)

var totpOpts = totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// MFASetup is what a person needs to add TaskJuice to an authenticator
// app. It is shown only while setup waits for its first code.
type MFASetup struct {
	Key string // the secret, for typing in by hand
	URL string // otpauth:// URL
	QR  []byte // PNG of the URL
}

// MFAStatus is a person's MFA state.
type MFAStatus struct {
	Enabled         bool
	Pending         bool // setup started, first code not yet given
	EnabledAt       *time.Time
	BackupCodesLeft int
}

func mfaStaffOnly(p Principal) error {
	if !p.Role.IsStaff() {
		return apperr.Forbidden(MsgMFAForStaff)
	}
	return nil
}

func (s *Service) needVault() error {
	if s.vault == nil {
		return errors.New("mfa: no vault configured")
	}
	return nil
}

// MFAStatusOf reads the principal's MFA state.
func (s *Service) MFAStatusOf(ctx context.Context, p Principal) (MFAStatus, error) {
	var st MFAStatus
	var enabled sql.NullTime
	err := s.db.Read().QueryRowContext(ctx, `SELECT enabled_at,
		(SELECT count(*) FROM mfa_backup_codes WHERE user_id = $1 AND used_at IS NULL)
		FROM user_mfa WHERE user_id = $1`, p.User.ID).Scan(&enabled, &st.BackupCodesLeft)
	if errors.Is(err, sql.ErrNoRows) {
		return MFAStatus{}, nil
	}
	if err != nil {
		return MFAStatus{}, fmt.Errorf("read mfa: %w", err)
	}
	st.Enabled, st.Pending, st.EnabledAt = enabled.Valid, !enabled.Valid, nullTime(enabled)
	return st, nil
}

func (s *Service) mfaOn(ctx context.Context, q db.Querier, userID string) (bool, error) {
	var on bool
	err := q.QueryRowContext(ctx, `SELECT enabled_at IS NOT NULL FROM user_mfa WHERE user_id = $1`, userID).Scan(&on)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read mfa: %w", err)
	}
	return on, nil
}

// BeginMFASetup makes a new secret for the principal, sealed in the vault,
// and returns it for the authenticator app. MFA turns on only once a code
// from it is given to EnableMFA; starting again replaces the secret.
func (s *Service) BeginMFASetup(ctx context.Context, p Principal) (MFASetup, error) {
	if err := mfaStaffOnly(p); err != nil {
		return MFASetup{}, err
	}
	if err := s.needVault(); err != nil {
		return MFASetup{}, err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: MFAIssuer, AccountName: p.User.Email, Digits: otp.DigitsSix, Period: 30})
	if err != nil {
		return MFASetup{}, fmt.Errorf("generate mfa secret: %w", err)
	}
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		var handle string
		var enabled sql.NullTime
		err := tx.QueryRowContext(ctx, `SELECT secret_handle, enabled_at FROM user_mfa WHERE user_id = $1`, p.User.ID).Scan(&handle, &enabled)
		switch {
		case err == nil && enabled.Valid:
			return apperr.Conflict("mfa_on", "", "Multi-factor authentication is already on.")
		case err == nil:
			_, err = s.vault.Put(ctx, tx, handle, vault.KindMFASecret, p.User.ID, []byte(key.String()))
			return err
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("read mfa: %w", err)
		}
		if handle, err = s.vault.Put(ctx, tx, "", vault.KindMFASecret, p.User.ID, []byte(key.String())); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO user_mfa (user_id, secret_handle, created_at) VALUES ($1, $2, $3)`, p.User.ID, handle, s.now())
		if err != nil {
			return fmt.Errorf("start mfa setup: %w", err)
		}
		return nil
	})
	if err != nil {
		return MFASetup{}, err
	}
	return setupOf(key)
}

// PendingMFASetup returns the setup waiting for its first code, so the
// page can show it again; once MFA is on the secret is never shown.
func (s *Service) PendingMFASetup(ctx context.Context, p Principal) (MFASetup, bool, error) {
	if err := s.needVault(); err != nil || !p.Role.IsStaff() {
		return MFASetup{}, false, err
	}
	key, enabled, err := s.mfaKey(ctx, s.db.Read(), p.User.ID)
	if apperr.IsNotFound(err) || (err == nil && enabled) {
		return MFASetup{}, false, nil
	}
	if err != nil {
		return MFASetup{}, false, err
	}
	setup, err := setupOf(key)
	return setup, err == nil, err
}

func setupOf(key *otp.Key) (MFASetup, error) {
	img, err := key.Image(240, 240)
	if err != nil {
		return MFASetup{}, fmt.Errorf("draw mfa qr code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return MFASetup{}, fmt.Errorf("encode mfa qr code: %w", err)
	}
	return MFASetup{Key: key.Secret(), URL: key.URL(), QR: buf.Bytes()}, nil
}

// mfaKey opens the person's TOTP key from the vault.
func (s *Service) mfaKey(ctx context.Context, q db.Querier, userID string) (*otp.Key, bool, error) {
	if err := s.needVault(); err != nil {
		return nil, false, err
	}
	var handle string
	var enabled sql.NullTime
	err := q.QueryRowContext(ctx, `SELECT secret_handle, enabled_at FROM user_mfa WHERE user_id = $1`, userID).Scan(&handle, &enabled)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, apperr.ErrNotFound
	}
	if err != nil {
		return nil, false, fmt.Errorf("read mfa: %w", err)
	}
	raw, err := s.vault.Open(ctx, q, handle, userID)
	if err != nil {
		return nil, false, fmt.Errorf("open mfa secret: %w", err)
	}
	key, err := otp.NewKeyFromURL(string(raw))
	if err != nil {
		return nil, false, fmt.Errorf("read mfa secret: %w", err)
	}
	return key, enabled.Valid, nil
}

// matchStep finds the time step (now, or one either side for clock drift)
// whose code is code.
func matchStep(secret, code string, now time.Time) (int64, bool) {
	step := now.Unix() / 30
	for _, st := range []int64{step, step - 1, step + 1} {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(st*30, 0), totpOpts)
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return st, true
		}
	}
	return 0, false
}

func isTOTPCode(code string) bool {
	if len(code) != 6 {
		return false
	}
	for _, c := range code {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// normalizeCode drops the spaces and hyphens people type or paste.
func normalizeCode(code string) string {
	return strings.ToLower(strings.NewReplacer(" ", "", "-", "", "\t", "").Replace(strings.TrimSpace(code)))
}

// useCode accepts a current TOTP code (each time step once: a code seen
// before is refused) or an unused backup code (then used up).
func (s *Service) useCode(ctx context.Context, q db.Querier, userID, code string) (bool, error) {
	code = normalizeCode(code)
	if code == "" || len(code) > 32 {
		return false, nil
	}
	if !isTOTPCode(code) {
		res, err := q.ExecContext(ctx, `UPDATE mfa_backup_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL`,
			s.now(), userID, hashBackupCode(userID, code))
		if err != nil {
			return false, fmt.Errorf("use backup code: %w", err)
		}
		n, _ := res.RowsAffected()
		return n == 1, nil
	}
	key, enabled, err := s.mfaKey(ctx, q, userID)
	if apperr.IsNotFound(err) || (err == nil && !enabled) {
		return false, nil // MFA was turned off meanwhile: no code is right
	}
	if err != nil {
		return false, err
	}
	step, ok := matchStep(key.Secret(), code, s.now())
	if !ok {
		return false, nil
	}
	res, err := q.ExecContext(ctx, `UPDATE user_mfa SET last_step = $1 WHERE user_id = $2 AND last_step < $1 AND enabled_at IS NOT NULL`, step, userID)
	if err != nil {
		return false, fmt.Errorf("record mfa code: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// EnableMFA turns MFA on once the person proves their app has the secret,
// and returns their backup codes, shown this once.
func (s *Service) EnableMFA(ctx context.Context, p Principal, code string) ([]string, error) {
	if err := mfaStaffOnly(p); err != nil {
		return nil, err
	}
	if err := s.needVault(); err != nil {
		return nil, err
	}
	var codes []string
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		key, enabled, err := s.mfaKey(ctx, tx, p.User.ID)
		if apperr.IsNotFound(err) {
			return apperr.Invalid("code", "Start with Set up MFA, then enter the code your app shows.")
		}
		if err != nil {
			return err
		}
		if enabled {
			return apperr.Conflict("mfa_on", "", "Multi-factor authentication is already on.")
		}
		step, ok := matchStep(key.Secret(), normalizeCode(code), s.now())
		if !ok {
			return apperr.Invalid("code", "That code is not right. Enter the 6-digit code your authenticator app shows now.")
		}
		if _, err := tx.ExecContext(ctx, `UPDATE user_mfa SET enabled_at = $1, last_step = $2 WHERE user_id = $3`, s.now(), step, p.User.ID); err != nil {
			return fmt.Errorf("enable mfa: %w", err)
		}
		codes, err = s.replaceBackupCodes(ctx, tx, p.User.ID)
		return err
	})
	return codes, err
}

// errWrongCode ends a transaction whose code was not right.
var errWrongCode = errors.New("wrong mfa code")

// withCurrentCode runs fn once a current code is given: the proof that
// turning MFA off or replacing the backup codes needs. Wrong codes count
// against the sign-in limits of the person and address.
func (s *Service) withCurrentCode(ctx context.Context, p Principal, code, ip string, fn func(tx db.Querier) error) error {
	if err := mfaStaffOnly(p); err != nil {
		return err
	}
	if err := s.needVault(); err != nil {
		return err
	}
	if on, err := s.mfaOn(ctx, s.db.Read(), p.User.ID); err != nil || !on {
		if err == nil {
			err = apperr.Conflict("mfa_off", "", "Multi-factor authentication is off.")
		}
		return err
	}
	att, err := s.admit(ctx, p.User.Email, ip)
	if err != nil {
		return err
	}
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		ok, err := s.useCode(ctx, tx, p.User.ID, code)
		if err != nil {
			return err
		}
		if !ok {
			return errWrongCode
		}
		return fn(tx)
	})
	switch {
	case errors.Is(err, errWrongCode):
		return apperr.Invalid("code", MsgBadCode) // the attempt stays counted
	case err != nil:
		return err
	}
	return s.release(ctx, s.db.Write(), att, false)
}

// RegenerateBackupCodes replaces the backup codes, given a current code.
func (s *Service) RegenerateBackupCodes(ctx context.Context, p Principal, code, ip string) ([]string, error) {
	var codes []string
	err := s.withCurrentCode(ctx, p, code, ip, func(tx db.Querier) error {
		var err error
		codes, err = s.replaceBackupCodes(ctx, tx, p.User.ID)
		return err
	})
	return codes, err
}

// DisableMFA turns MFA off, given a current code; the secret leaves the
// vault.
func (s *Service) DisableMFA(ctx context.Context, p Principal, code, ip string) error {
	return s.withCurrentCode(ctx, p, code, ip, func(tx db.Querier) error {
		var handle string
		if err := tx.QueryRowContext(ctx, `SELECT secret_handle FROM user_mfa WHERE user_id = $1`, p.User.ID).Scan(&handle); err != nil {
			return fmt.Errorf("read mfa: %w", err)
		}
		for _, q := range []string{`DELETE FROM user_mfa WHERE user_id = $1`, `DELETE FROM mfa_backup_codes WHERE user_id = $1`} {
			if _, err := tx.ExecContext(ctx, q, p.User.ID); err != nil {
				return fmt.Errorf("disable mfa: %w", err)
			}
		}
		return s.vault.Delete(ctx, tx, handle)
	})
}

func (s *Service) replaceBackupCodes(ctx context.Context, tx db.Querier, userID string) ([]string, error) {
	if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_backup_codes WHERE user_id = $1`, userID); err != nil {
		return nil, fmt.Errorf("replace backup codes: %w", err)
	}
	codes := make([]string, BackupCodeCount)
	now := s.now()
	for i := range codes {
		codes[i] = newBackupCode()
		if _, err := tx.ExecContext(ctx, `INSERT INTO mfa_backup_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)`,
			userID, hashBackupCode(userID, normalizeCode(codes[i])), now); err != nil {
			return nil, fmt.Errorf("store backup code: %w", err)
		}
	}
	return codes, nil
}

var backupAlphabet = base32.NewEncoding("abcdefghijkmnpqrstuvwxyz23456789").WithPadding(base32.NoPadding)

// newBackupCode is ten characters (50 random bits) in two groups, without
// letters that read alike (l, o).
func newBackupCode() string {
	b := make([]byte, 7)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	c := backupAlphabet.EncodeToString(b)[:10]
	return c[:5] + "-" + c[5:]
}

func hashBackupCode(userID, code string) string {
	sum := sha256.Sum256([]byte("backup-code:" + userID + ":" + code))
	return hex.EncodeToString(sum[:])
}

// ResetMFA turns a person's MFA off without a code, for an operator at the
// command line when the authenticator and the backup codes are lost; their
// sessions end, and a waiting sign-in with them.
func (s *Service) ResetMFA(ctx context.Context, email string) error {
	email, err := NormalizeEmail(email)
	if err != nil {
		return err
	}
	store := s.vault
	if store == nil {
		store = vault.NewStore(s.db, vault.Keyring{}) // deleting needs no key
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		var userID string
		var handle sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT u.id, f.secret_handle FROM users u LEFT JOIN user_mfa f ON f.user_id = u.id WHERE u.email = $1`, email).
			Scan(&userID, &handle)
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("find user: %w", err)
		}
		if !handle.Valid {
			return apperr.Conflict("mfa_off", "", "Multi-factor authentication is off.")
		}
		for _, q := range []string{`DELETE FROM user_mfa WHERE user_id = $1`, `DELETE FROM mfa_backup_codes WHERE user_id = $1`,
			`DELETE FROM mfa_challenges WHERE user_id = $1`, `DELETE FROM sessions WHERE user_id = $1`} {
			if _, err := tx.ExecContext(ctx, q, userID); err != nil {
				return fmt.Errorf("reset mfa: %w", err)
			}
		}
		return store.Delete(ctx, tx, handle.String)
	})
}
