package account

// Role is a person's role: one of the three staff roles of an account, or
// the client role of one workspace.
type Role string

const (
	RoleOwner  Role = "account-owner"
	RoleAdmin  Role = "account-admin"
	RoleMember Role = "account-member"
	RoleClient Role = "workspace-client"
)

// Capability is one thing a role may do. Access is always checked per
// capability, never by comparing ranks.
type Capability string

const (
	CapRead              Capability = "read"
	CapWrite             Capability = "write" // build workflows and connections
	CapInviteTeammate    Capability = "inviteTeammate"
	CapManageWorkspaces  Capability = "manageWorkspaces"
	CapBilling           Capability = "billing"
	CapTransferOwnership Capability = "transferOwnership"
	CapDeleteAccount     Capability = "deleteAccount"
)

var capabilities = map[Role]map[Capability]bool{
	RoleOwner: {
		CapRead: true, CapWrite: true, CapInviteTeammate: true, CapManageWorkspaces: true,
		CapBilling: true, CapTransferOwnership: true, CapDeleteAccount: true,
	},
	RoleAdmin: {
		CapRead: true, CapWrite: true, CapInviteTeammate: true, CapManageWorkspaces: true,
	},
	RoleMember: {
		CapRead: true, CapWrite: true,
	},
	// A client reads their own workspace through the portal, nothing more.
	RoleClient: {
		CapRead: true,
	},
}

// Can reports whether the role grants the capability.
func (r Role) Can(c Capability) bool { return capabilities[r][c] }

// Rank orders staff roles for display only (3 owner, 2 admin, 1 member).
func (r Role) Rank() int {
	switch r {
	case RoleOwner:
		return 3
	case RoleAdmin:
		return 2
	case RoleMember:
		return 1
	}
	return 0
}

// IsStaff reports whether the role is one of an account's staff roles.
func (r Role) IsStaff() bool { return r.Rank() > 0 }

// Label is the role's name for people.
func (r Role) Label() string {
	switch r {
	case RoleOwner:
		return "Owner"
	case RoleAdmin:
		return "Admin"
	case RoleMember:
		return "Member"
	case RoleClient:
		return "Client"
	}
	return string(r)
}

// ParseStaffRole accepts the staff roles that can be given directly (the
// owner role moves only by transfer).
func ParseStaffRole(s string) (Role, bool) {
	switch Role(s) {
	case RoleAdmin, RoleMember:
		return Role(s), true
	}
	return "", false
}
