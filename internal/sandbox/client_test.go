package sandbox_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/sandbox"
)

func TestAdminClient(t *testing.T) {
	f := setup(t, nil)
	ctx := t.Context()
	tok := f.connect(t, f.cfg, "Client Co")
	ac, err := sandbox.NewAdminClient(f.base, adminToken, nil)
	if err != nil {
		t.Fatal(err)
	}

	grants, err := ac.Grants(ctx)
	if err != nil || len(grants) != 1 || grants[0].AccountName != "Client Co" || grants[0].Revoked {
		t.Fatalf("Grants: got %+v, %v, want one live grant of Client Co", grants, err)
	}
	if err := ac.FailNext(ctx, 2, sandbox.Fault429, 3*time.Second); err != nil {
		t.Fatalf("FailNext: %v", err)
	}
	for range 2 {
		_, err := f.refresh(ctx, tok.RefreshToken)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.Response.StatusCode != 429 || re.Response.Header.Get("Retry-After") != "3" {
			t.Fatalf("refresh during fault: got %v, want 429 with Retry-After 3", err)
		}
	}
	l, err := ac.SetLifetimes(ctx, 45*time.Second, 0)
	if err != nil || l.AccessTTL != 45*time.Second || l.RefreshTTL != sandbox.DefaultRefreshTTL {
		t.Fatalf("SetLifetimes: got %+v, %v, want 45s and the default refresh TTL", l, err)
	}
	next, err := f.refresh(ctx, tok.RefreshToken)
	if err != nil || next.ExpiresIn != 45 {
		t.Fatalf("refresh after the fault: got %v, %v, want expires_in 45", next, err)
	}
	st, err := ac.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.FailuresInjected != 2 || st.TokenRequests["refresh_token"] != 3 || st.Refreshes[grants[0].ID] != 1 || st.TokensIssued["authorization_code"] != 1 {
		t.Errorf("Stats: got %+v, want 2 injected, 3 refresh requests, 1 refresh, 1 code exchange", st)
	}
	if n, err := ac.RevokeAccount(ctx, "client co"); err != nil || n != 1 {
		t.Errorf("RevokeAccount: got %d, %v, want 1, nil", n, err)
	}
	if _, err := f.refresh(ctx, next.RefreshToken); oauthErrorCode(err) != "invalid_grant" {
		t.Errorf("refresh after revoke: got %v, want invalid_grant", err)
	}
	if err := ac.RevokeGrant(ctx, "G-unknown"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("RevokeGrant unknown: got %v, want ErrNotFound", err)
	}
	var apiErr *sandbox.APIError
	if err := ac.FailNext(ctx, 1, "teapot", 0); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Errorf("bad fault kind: got %v, want a 400", err)
	}

	wrong, _ := sandbox.NewAdminClient(f.base, "wrong", nil)
	if _, err := wrong.Stats(ctx); !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		t.Errorf("wrong admin token: got %v, want a 401", err)
	}
	if _, err := sandbox.NewAdminClient("not a url", adminToken, nil); err == nil {
		t.Error("bad URL: got nil, want an error")
	}
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	f := setup(t, func(o *sandbox.Options) { o.AdminToken = "" })
	ac, _ := sandbox.NewAdminClient(f.base, "anything", nil)
	var apiErr *sandbox.APIError
	if _, err := ac.Stats(t.Context()); !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden {
		t.Errorf("got %v, want a 403", err)
	}
}

func TestConsentHelperReportsErrorPage(t *testing.T) {
	f := setup(t, nil)
	cfg := *f.cfg
	cfg.RedirectURL = "https://elsewhere.example/cb"
	_, err := sandbox.Consent(t.Context(), nil, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "", true)
	var apiErr *sandbox.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || apiErr.Message == "" {
		t.Errorf("got %v, want a 400 carrying the page's message", err)
	}
}

func TestAdminClientEmitAndFailDeliveries(t *testing.T) {
	f := setup(t, nil)
	ctx := t.Context()
	f.connect(t, f.cfg, "Client Co")
	ac, err := sandbox.NewAdminClient(f.base, adminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := ac.Emit(ctx, "Client Co", "#general", "Lead", 3)
	if err != nil || len(msgs) != 3 || msgs[0].Text != "Lead 1" || msgs[2].Text != "Lead 3" {
		t.Fatalf("Emit: got %+v, %v, want Lead 1 … Lead 3", msgs, err)
	}
	if _, err := ac.Emit(ctx, "Nobody", "general", "x", 1); err == nil {
		t.Fatal("Emit to an unknown account: no error")
	}
	if _, err := ac.Emit(ctx, "Client Co", "general", "x", 0); err == nil {
		t.Fatal("Emit of 0 messages: no error")
	}
	if err := ac.FailDeliveries(ctx, 2); err != nil {
		t.Fatalf("FailDeliveries: %v", err)
	}
	if err := ac.FailDeliveries(ctx, -1); err == nil {
		t.Fatal("FailDeliveries(-1): no error")
	}
	if st, err := ac.Stats(ctx); err != nil || st.MessagesPosted != 3 {
		t.Fatalf("Stats: %+v, %v, want 3 messages posted", st, err)
	}
}
