// Package account owns accounts (agencies), their staff, workspaces (client
// engagements), clients, invitations, sign-in sessions and API tokens.
package account

import (
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"taskjuice/internal/apperr"
	"taskjuice/internal/textcheck"
)

// Account is an agency.
type Account struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// AlertEmails: critical alerts are emailed to the owner and admins.
	AlertEmails bool `json:"alertEmails"`
	// ContactEmail also gets the account's alert emails; SupportEmail is
	// shown to clients in their portal. Either may be empty.
	ContactEmail string `json:"contactEmail"`
	SupportEmail string `json:"supportEmail"`
	// DefaultTimezone is used by schedules that name no time zone, and by
	// failure digests.
	DefaultTimezone string `json:"defaultTimezone"`
	// AuditRetentionDays is how long audit entries are kept.
	AuditRetentionDays int       `json:"auditRetentionDays"`
	CreatedAt          time.Time `json:"createdAt"`
}

// User is a person who can sign in: staff of one account, or a client of
// one workspace.
type User struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// Workspace is one client engagement inside an account.
type Workspace struct {
	ID        string    `json:"id"`
	AccountID string    `json:"accountId"`
	Name      string    `json:"name"`
	Slug      string    `json:"slug"`
	CreatedAt time.Time `json:"createdAt"`
}

// Principal is who is acting: the user, and their place in the tenancy.
// Staff have an account role; a client has RoleClient and one workspace.
type Principal struct {
	User        User
	AccountID   string
	AccountName string
	Role        Role
	WorkspaceID string // clients only
	// Via says how the request was authenticated ("session" or "token").
	Via string
	// MFAHold: the account requires MFA, its grace period is over, and this
	// staff member has not turned it on; they may only enroll.
	MFAHold bool
}

// Can reports whether the principal's role grants c.
func (p Principal) Can(c Capability) bool { return p.Role.Can(c) }

// IsClient reports whether the principal is a workspace client.
func (p Principal) IsClient() bool { return p.Role == RoleClient }

// Member is a person with access to a workspace: the account's staff (who
// act as admins in every workspace) and the workspace's clients.
type Member struct {
	User     User      `json:"user"`
	Role     Role      `json:"role"`
	JoinedAt time.Time `json:"joinedAt"`
}

// Invitation is a pending (or past) invitation to join.
type Invitation struct {
	ID          string     `json:"id"`
	Email       string     `json:"email"`
	Role        Role       `json:"role"`
	WorkspaceID string     `json:"workspaceId,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	ExpiresAt   time.Time  `json:"expiresAt"`
	AcceptedAt  *time.Time `json:"acceptedAt,omitempty"`
	RevokedAt   *time.Time `json:"revokedAt,omitempty"`
}

// Pending reports whether the invitation can still be accepted at now.
func (i Invitation) Pending(now time.Time) bool {
	return i.AcceptedAt == nil && i.RevokedAt == nil && now.Before(i.ExpiresAt)
}

// APIToken describes a token; the secret itself is shown once at creation.
type APIToken struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
}

// Validation messages people see.
const (
	MsgSlugTaken    = "This slug is already taken"
	MsgSlugInvalid  = "Slug must be 2–50 characters: lowercase letters, digits and hyphens, not starting or ending with a hyphen"
	MsgSlugReserved = "This slug is reserved; choose another"
	MsgNameInvalid  = "Name must be 1–100 characters"
)

var slugPattern = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$`)

// reservedSlugs are first path segments the product itself uses, so a
// workspace named after one would be unreachable.
var reservedSlugs = map[string]bool{
	"api": true, "dashboard": true, "portal": true, "signin": true, "signout": true,
	"settings": true, "static": true, "webhooks": true, "healthz": true, "readyz": true,
	"metrics": true, "invitations": true, "oauth": true, "admin": true, "favicon.ico": true, "account": true,
}

// ValidateSlug checks a workspace slug's form (not whether it is taken).
func ValidateSlug(slug string) error {
	if len(slug) < 2 || len(slug) > 50 || !slugPattern.MatchString(slug) {
		return apperr.Invalid("slug", MsgSlugInvalid)
	}
	if reservedSlugs[slug] {
		return apperr.Invalid("slug", MsgSlugReserved)
	}
	return nil
}

// ValidateName checks a workspace or account name: 1–100 characters after
// trimming, on one line.
func ValidateName(name string) error {
	n := utf8.RuneCountInString(strings.TrimSpace(name))
	if n < 1 || n > 100 || !utf8.ValidString(name) {
		return apperr.Invalid("name", MsgNameInvalid)
	}
	return textcheck.Line("name", "A name", name)
}

// NormalizeEmail lower-cases and trims an email address, and checks its
// rough shape (an @ with something on both sides, no spaces).
func NormalizeEmail(email string) (string, error) {
	// Judged before lower-casing, which would quietly turn invalid UTF-8
	// into replacement characters.
	e := strings.TrimSpace(email)
	ok := textcheck.Storable(e) && !textcheck.HasControl(e)
	e = strings.ToLower(e)
	at := strings.LastIndexByte(e, '@')
	if !ok || at < 1 || at == len(e)-1 || strings.ContainsAny(e, " <>,;") || len(e) > 254 {
		return "", apperr.Invalid("email", "Enter a valid email address, like name@example.com")
	}
	return e, nil
}

func invalid(field, msg string) error { return apperr.Invalid(field, msg) }
