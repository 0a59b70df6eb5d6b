package connection

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

// Revoke withdraws a connection on purpose: it asks the app to revoke the
// refresh token (or the access token) where the app has a revocation
// endpoint (RFC 7009), then sets the connection revoked. The app's answer
// does not block the revocation here: a person who revokes wants it gone
// from TaskJuice whatever the app says; the outcome is noted in the history.
func (s *Service) Revoke(ctx context.Context, ws account.Workspace, id string, actor Actor, cfg *oauth2.Config, revokeURL string, client *http.Client) (Connection, error) {
	c, _, err := s.RevokeReporting(ctx, ws, id, actor, cfg, revokeURL, client)
	return c, err
}

// RevokeReporting is Revoke that also says, in words, how the app's
// revocation endpoint answered ("" when there is none to call).
func (s *Service) RevokeReporting(ctx context.Context, ws account.Workspace, id string, actor Actor, cfg *oauth2.Config, revokeURL string, client *http.Client) (Connection, string, error) {
	c, err := s.Get(ctx, ws, id)
	if err != nil {
		return Connection{}, "", err
	}
	if c.Status == StatusRevoked {
		return Connection{}, "", apperr.Conflict("already_revoked", "", "This connection is already revoked.")
	}
	detail := map[string]string{}
	if revokeURL != "" && cfg != nil {
		detail["providerRevocation"] = s.revokeAtProvider(ctx, c.ID, cfg, revokeURL, client)
	}
	if _, err := s.Transition(ctx, c.ID, StatusRevoked, "revoked by a person", actor, detail); err != nil {
		return Connection{}, "", err
	}
	c, err = s.Get(ctx, ws, id)
	return c, detail["providerRevocation"], err
}

// revokeAtProvider posts the token to the app's revocation endpoint and
// says how it went, in words for the history (never the token).
func (s *Service) revokeAtProvider(ctx context.Context, connID string, cfg *oauth2.Config, revokeURL string, client *http.Client) string {
	raw, _, err := s.Secret(ctx, connID)
	if err != nil {
		return "not attempted: no stored credential"
	}
	cred, err := unmarshalCredential(raw)
	if err != nil || cred.OAuth == nil {
		return "not attempted: no OAuth token"
	}
	form := url.Values{}
	if cred.OAuth.RefreshToken != "" {
		form.Set("token", cred.OAuth.RefreshToken)
		form.Set("token_type_hint", "refresh_token")
	} else {
		form.Set("token", cred.OAuth.AccessToken)
		form.Set("token_type_hint", "access_token")
	}
	if cfg.Endpoint.AuthStyle == oauth2.AuthStyleInParams {
		form.Set("client_id", cfg.ClientID)
		if cfg.ClientSecret != "" {
			form.Set("client_secret", cfg.ClientSecret)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, revokeURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "failed: bad revocation URL"
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cfg.Endpoint.AuthStyle != oauth2.AuthStyleInParams {
		req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	}
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		return "failed: the app could not be reached"
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode/100 == 2 {
		return "revoked at the app"
	}
	return fmt.Sprintf("the app answered HTTP %d", res.StatusCode)
}
