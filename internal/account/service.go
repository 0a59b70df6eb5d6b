package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/textcheck"
	"taskjuice/internal/vault"
)

// Service is the account domain: every read and write of its tables goes
// through it.
type Service struct {
	db  *db.DB
	now func() time.Time
	// vault seals MFA secrets; see UseVault.
	vault *vault.Store
	// tzHooks follow changes of an account's default time zone.
	tzHooks []func(ctx context.Context, accountID string)
}

// NewService returns the account service over d.
func NewService(d *db.DB) *Service {
	return &Service{db: d, now: db.Now}
}

// UseVault gives the service the vault MFA secrets are sealed in; without
// it nobody can turn MFA on (or sign in with it).
func (s *Service) UseVault(keys vault.Keyring) { s.vault = vault.NewStore(s.db, keys) }

// SetClock makes the service read time from now (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// NewUser is what it takes to create a person.
type NewUser struct {
	Email    string
	Name     string
	Password string
}

func (u *NewUser) normalize() error {
	email, err := NormalizeEmail(u.Email)
	if err != nil {
		return err
	}
	u.Email = email
	u.Name = strings.TrimSpace(u.Name)
	if u.Name == "" {
		u.Name = email[:strings.IndexByte(email, '@')]
	}
	if len(u.Name) > 100 {
		return invalid("name", MsgNameInvalid)
	}
	if err := textcheck.Line("name", "A name", u.Name); err != nil {
		return err
	}
	return validatePassword(u.Password)
}

var errEmailTaken = apperr.Conflict("email_taken", "email", "Someone with this email already has a TaskJuice sign-in")

func (s *Service) insertUser(ctx context.Context, q db.Querier, u NewUser) (User, error) {
	hash, err := hashPassword(u.Password)
	if err != nil {
		return User{}, err
	}
	now := s.now()
	user := User{ID: db.NewID(), Email: u.Email, Name: u.Name, CreatedAt: now}
	_, err = q.ExecContext(ctx, `INSERT INTO users (id, email, name, password_hash, created_at, password_changed_at)
		VALUES ($1, $2, $3, $4, $5, $5)`, user.ID, user.Email, user.Name, hash, now)
	if db.IsUniqueViolation(err) {
		return User{}, errEmailTaken
	}
	if err != nil {
		return User{}, fmt.Errorf("insert user: %w", err)
	}
	return user, nil
}

// CreateAccount creates an agency together with its owner, in one
// transaction: an account never exists without exactly one owner.
func (s *Service) CreateAccount(ctx context.Context, name string, owner NewUser) (Account, User, error) {
	if err := ValidateName(name); err != nil {
		return Account{}, User{}, err
	}
	if err := owner.normalize(); err != nil {
		return Account{}, User{}, err
	}
	acct := Account{ID: db.NewID(), Name: strings.TrimSpace(name), CreatedAt: s.now()}
	var user User
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)`,
			acct.ID, acct.Name, acct.CreatedAt); err != nil {
			return fmt.Errorf("insert account: %w", err)
		}
		var err error
		if user, err = s.insertUser(ctx, tx, owner); err != nil {
			return err
		}
		return addStaff(ctx, tx, acct.ID, user.ID, RoleOwner, acct.CreatedAt)
	})
	if err != nil {
		return Account{}, User{}, err
	}
	return acct, user, nil
}

func addStaff(ctx context.Context, q db.Querier, accountID, userID string, role Role, at time.Time) error {
	_, err := q.ExecContext(ctx, `INSERT INTO account_members (account_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)`,
		accountID, userID, string(role), at)
	if err != nil {
		return fmt.Errorf("add staff: %w", err)
	}
	return nil
}

// CreateStaff creates a person as staff of an account with an admin or
// member role (the owner role moves only by transfer).
func (s *Service) CreateStaff(ctx context.Context, accountID string, u NewUser, role Role) (User, error) {
	if role != RoleAdmin && role != RoleMember {
		return User{}, invalid("role", "Role must be account-admin or account-member")
	}
	if err := u.normalize(); err != nil {
		return User{}, err
	}
	var user User
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		if err := exists(ctx, tx, `SELECT 1 FROM accounts WHERE id = $1`, accountID); err != nil {
			return err
		}
		var err error
		if user, err = s.insertUser(ctx, tx, u); err != nil {
			return err
		}
		return addStaff(ctx, tx, accountID, user.ID, role, user.CreatedAt)
	})
	return user, err
}

// CreateClient creates a person as a client of one workspace.
func (s *Service) CreateClient(ctx context.Context, workspaceID string, u NewUser) (User, error) {
	if err := u.normalize(); err != nil {
		return User{}, err
	}
	var user User
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		if err := exists(ctx, tx, `SELECT 1 FROM workspaces WHERE id = $1`, workspaceID); err != nil {
			return err
		}
		var err error
		if user, err = s.insertUser(ctx, tx, u); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO workspace_clients (workspace_id, user_id, created_at) VALUES ($1, $2, $3)`,
			workspaceID, user.ID, user.CreatedAt)
		if err != nil {
			return fmt.Errorf("add client: %w", err)
		}
		return nil
	})
	return user, err
}

// exists returns apperr.ErrNotFound when the query yields no row.
func exists(ctx context.Context, q db.Querier, query string, args ...any) error {
	var one int
	err := q.QueryRowContext(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return apperr.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("check existence: %w", err)
	}
	return nil
}

// ResetPassword sets a new password for the person with this email and
// signs them out everywhere.
func (s *Service) ResetPassword(ctx context.Context, email, password string) error {
	email, err := NormalizeEmail(email)
	if err != nil {
		return err
	}
	if err := validatePassword(password); err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		var id string
		err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE email = $1`, email).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("find user: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3`, hash, s.now(), id); err != nil {
			return fmt.Errorf("update password: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = $1`, id); err != nil {
			return fmt.Errorf("end sessions: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM signin_throttle WHERE email = $1`, email); err != nil {
			return fmt.Errorf("clear failures: %w", err)
		}
		return nil
	})
}

// Account returns an account by id.
func (s *Service) Account(ctx context.Context, id string) (Account, error) {
	var a Account
	err := s.db.Read().QueryRowContext(ctx, `SELECT id, name, alert_emails, contact_email, support_email, default_timezone, audit_retention_days, created_at
		FROM accounts WHERE id = $1`, id).
		Scan(&a.ID, &a.Name, &a.AlertEmails, &a.ContactEmail, &a.SupportEmail, &a.DefaultTimezone, &a.AuditRetentionDays, &a.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, apperr.ErrNotFound
	}
	if err != nil {
		return Account{}, fmt.Errorf("read account: %w", err)
	}
	a.CreatedAt = a.CreatedAt.UTC()
	return a, nil
}

// MsgAdminRequired is the message for staff actions that need an admin.
const MsgAdminRequired = "403 Tenant admin required"

var errAdminRequired = apperr.Forbidden(MsgAdminRequired)

// principal loads who a user is in the tenancy.
func (s *Service) principal(ctx context.Context, q db.Querier, userID string) (Principal, error) {
	var p Principal
	var role string
	err := q.QueryRowContext(ctx, `SELECT u.id, u.email, u.name, u.created_at, m.account_id, a.name, m.role
		FROM users u JOIN account_members m ON m.user_id = u.id JOIN accounts a ON a.id = m.account_id
		WHERE u.id = $1`, userID).
		Scan(&p.User.ID, &p.User.Email, &p.User.Name, &p.User.CreatedAt, &p.AccountID, &p.AccountName, &role)
	if err == nil {
		p.Role = Role(role)
		p.User.CreatedAt = p.User.CreatedAt.UTC()
		return p, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return Principal{}, fmt.Errorf("read staff membership: %w", err)
	}
	err = q.QueryRowContext(ctx, `SELECT u.id, u.email, u.name, u.created_at, w.account_id, a.name, w.id
		FROM users u JOIN workspace_clients c ON c.user_id = u.id JOIN workspaces w ON w.id = c.workspace_id
		JOIN accounts a ON a.id = w.account_id WHERE u.id = $1`, userID).
		Scan(&p.User.ID, &p.User.Email, &p.User.Name, &p.User.CreatedAt, &p.AccountID, &p.AccountName, &p.WorkspaceID)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, apperr.Unauthorized("This sign-in has no access to any account")
	}
	if err != nil {
		return Principal{}, fmt.Errorf("read client membership: %w", err)
	}
	p.Role = RoleClient
	p.User.CreatedAt = p.User.CreatedAt.UTC()
	return p, nil
}

// PrincipalByEmail loads a person by email (for admin commands and tests).
func (s *Service) PrincipalByEmail(ctx context.Context, email string) (Principal, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return Principal{}, err
	}
	var id string
	err = s.db.Read().QueryRowContext(ctx, `SELECT id FROM users WHERE email = $1`, email).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, apperr.ErrNotFound
	}
	if err != nil {
		return Principal{}, fmt.Errorf("find user: %w", err)
	}
	return s.principal(ctx, s.db.Read(), id)
}

// TransferOwnership makes another staff member of the account its owner;
// the previous owner becomes an admin. Only the owner can do it.
func (s *Service) TransferOwnership(ctx context.Context, p Principal, toUserID string) error {
	if !p.Can(CapTransferOwnership) {
		return apperr.Forbidden("Only the account owner can transfer ownership")
	}
	if toUserID == p.User.ID {
		return invalid("userId", "You already own this account")
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		var role string
		err := tx.QueryRowContext(ctx, `SELECT role FROM account_members WHERE account_id = $1 AND user_id = $2`, p.AccountID, toUserID).Scan(&role)
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read new owner: %w", err)
		}
		if Role(role) != RoleAdmin {
			return invalid("userId", "Ownership goes to an admin: make them an admin on the Team page first")
		}
		// Demote first: the partial unique index allows one owner at a time.
		if _, err := tx.ExecContext(ctx, `UPDATE account_members SET role = $1 WHERE account_id = $2 AND role = $3`,
			string(RoleAdmin), p.AccountID, string(RoleOwner)); err != nil {
			return fmt.Errorf("demote owner: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE account_members SET role = $1 WHERE account_id = $2 AND user_id = $3`,
			string(RoleOwner), p.AccountID, toUserID); err != nil {
			return fmt.Errorf("promote owner: %w", err)
		}
		return s.auditBy(ctx, tx, p, AuditOwnerTransferred, s.emailOf(ctx, tx, toUserID), "")
	})
}

// Staff lists the account's staff, owner first.
func (s *Service) Staff(ctx context.Context, p Principal) ([]Member, error) {
	if !p.Role.IsStaff() {
		return nil, apperr.ErrNotFound
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT u.id, u.email, u.name, u.created_at, m.role, m.created_at
		FROM account_members m JOIN users u ON u.id = m.user_id WHERE m.account_id = $1`, p.AccountID)
	if err != nil {
		return nil, fmt.Errorf("list staff: %w", err)
	}
	out, err := scanMembers(rows)
	if err != nil {
		return nil, err
	}
	sortMembers(out)
	return out, nil
}

func scanMembers(rows *sql.Rows) ([]Member, error) {
	defer rows.Close()
	var out []Member
	for rows.Next() {
		var m Member
		var role string
		if err := rows.Scan(&m.User.ID, &m.User.Email, &m.User.Name, &m.User.CreatedAt, &role, &m.JoinedAt); err != nil {
			return nil, fmt.Errorf("scan member: %w", err)
		}
		m.Role = Role(role)
		m.User.CreatedAt, m.JoinedAt = m.User.CreatedAt.UTC(), m.JoinedAt.UTC()
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return out, nil
}

func nullTime(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// DirectoryEntry is one account with its workspaces, for admin commands.
type DirectoryEntry struct {
	Account    Account
	Workspaces []Workspace
}

// Directory lists every account of the install with its workspaces. It is
// for operators at the command line, never for a web request.
func (s *Service) Directory(ctx context.Context) ([]DirectoryEntry, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT a.id, a.name, a.created_at,
		COALESCE(w.id, ''), COALESCE(w.name, ''), COALESCE(w.slug, '')
		FROM accounts a LEFT JOIN workspaces w ON w.account_id = a.id ORDER BY a.name, a.id, w.slug`)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	var out []DirectoryEntry
	for rows.Next() {
		var a Account
		var w Workspace
		if err := rows.Scan(&a.ID, &a.Name, &a.CreatedAt, &w.ID, &w.Name, &w.Slug); err != nil {
			return nil, fmt.Errorf("scan account: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Account.ID != a.ID {
			a.CreatedAt = a.CreatedAt.UTC()
			out = append(out, DirectoryEntry{Account: a})
		}
		if w.ID != "" {
			w.AccountID = a.ID
			last := &out[len(out)-1]
			last.Workspaces = append(last.Workspaces, w)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return out, nil
}
