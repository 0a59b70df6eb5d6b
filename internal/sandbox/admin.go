package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// MarshalJSON writes lifetimes as Go duration strings ("1h0m0s").
func (l Lifetimes) MarshalJSON() ([]byte, error) {
	return json.Marshal(lifetimesWire{AccessTTL: l.AccessTTL.String(), RefreshTTL: l.RefreshTTL.String()})
}

// UnmarshalJSON reads Go duration strings; an empty or missing one is zero.
func (l *Lifetimes) UnmarshalJSON(b []byte) error {
	var w lifetimesWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	var out Lifetimes
	for _, f := range []struct {
		s   string
		dst *time.Duration
	}{{w.AccessTTL, &out.AccessTTL}, {w.RefreshTTL, &out.RefreshTTL}} {
		if f.s == "" {
			continue
		}
		d, err := time.ParseDuration(f.s)
		if err != nil {
			return fmt.Errorf("lifetime %q: %w", f.s, err)
		}
		*f.dst = d
	}
	*l = out
	return nil
}

type lifetimesWire struct {
	AccessTTL  string `json:"access_ttl,omitempty"`
	RefreshTTL string `json:"refresh_ttl,omitempty"`
}

// revokeRequest is the body of POST /admin/revoke: one of the two fields.
type revokeRequest struct {
	GrantID string `json:"grant_id,omitempty"`
	Account string `json:"account,omitempty"`
}

type revokeResponse struct {
	Revoked int `json:"revoked"`
}

// failRequest is the body of POST /admin/fail.
type failRequest struct {
	Count             int       `json:"count"`
	Kind              FaultKind `json:"kind"`
	RetryAfterSeconds int       `json:"retry_after_seconds,omitempty"`
}

type grantsResponse struct {
	Grants []Grant `json:"grants"`
}

// adminOnly guards the admin API with the admin bearer token.
func (p *Provider) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.admin == "" {
			apiError(w, http.StatusForbidden, "admin_disabled", "The admin API is disabled: no admin token is configured.")
			return
		}
		token, _ := bearer(r)
		if !secretsEqual(p.admin, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="Sandbox Chat admin"`)
			apiError(w, http.StatusUnauthorized, "unauthorized", "A valid admin token is required.")
			return
		}
		h(w, r)
	}
}

func decodeAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_json", "The body is not valid JSON for this route: "+err.Error())
		return false
	}
	return true
}

func (p *Provider) handleAdminGrants(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, grantsResponse{Grants: p.Grants()})
}

func (p *Provider) handleAdminRevoke(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	if !decodeAdmin(w, r, &req) {
		return
	}
	var n int
	var err error
	switch {
	case (req.GrantID == "") == (req.Account == ""):
		apiError(w, http.StatusBadRequest, "invalid_request", "Give exactly one of grant_id and account.")
		return
	case req.GrantID != "":
		if err = p.RevokeGrant(req.GrantID); err == nil {
			n = 1
		}
	default:
		n, err = p.RevokeAccount(req.Account)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		apiError(w, http.StatusNotFound, "not_found", "No such grant or account.")
	case err != nil:
		p.log.Error("sandbox admin revoke", "err", err)
		apiError(w, http.StatusInternalServerError, "internal_error", "The revocation could not be saved.")
	default:
		writeJSON(w, http.StatusOK, revokeResponse{Revoked: n})
	}
}

func (p *Provider) handleAdminFail(w http.ResponseWriter, r *http.Request) {
	var req failRequest
	if !decodeAdmin(w, r, &req) {
		return
	}
	if req.Count < 0 || req.RetryAfterSeconds < 0 {
		apiError(w, http.StatusBadRequest, "invalid_request", "count and retry_after_seconds cannot be negative.")
		return
	}
	if err := p.FailNext(req.Count, req.Kind, time.Duration(req.RetryAfterSeconds)*time.Second); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "kind must be 500, 429 or timeout.")
		return
	}
	writeJSON(w, http.StatusOK, p.Stats())
}

func (p *Provider) handleAdminGetLifetimes(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, p.Lifetimes())
}

func (p *Provider) handleAdminLifetimes(w http.ResponseWriter, r *http.Request) {
	var req Lifetimes
	if !decodeAdmin(w, r, &req) {
		return
	}
	l, err := p.SetLifetimes(req.AccessTTL, req.RefreshTTL)
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "Lifetimes cannot be negative.")
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (p *Provider) handleAdminStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, p.Stats())
}
