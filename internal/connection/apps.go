package connection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"golang.org/x/oauth2"

	"taskjuice/internal/catalog"
)

// Revocation is how a connection of app is revoked at the app: its OAuth
// client and revocation endpoint; nil and "" when the app has none or is
// not configured (the connection is then revoked here only).
func Revocation(app catalog.App, redirectURL string) (*oauth2.Config, string) {
	cfg, err := OAuthConfig(app, redirectURL)
	if err != nil || app.OAuth.RevokeURL == "" {
		return nil, ""
	}
	return cfg, app.OAuth.RevokeURL
}

// OAuthConfig is the OAuth client of a catalog app, with the redirect URL
// of this TaskJuice. An app not configured yields its reason as an error a
// person can act on.
func OAuthConfig(app catalog.App, redirectURL string) (*oauth2.Config, error) {
	if !app.IsOAuth() || app.OAuth == nil {
		return nil, fmt.Errorf("%s does not connect through OAuth", app.Name)
	}
	if ok, reason := app.Configured(); !ok {
		return nil, errors.New(reason)
	}
	id, secret := app.ClientCredentials()
	style := oauth2.AuthStyleInHeader
	if app.OAuth.TokenAuthStyle == catalog.TokenAuthParams || secret == "" {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID:     id,
		ClientSecret: secret,
		RedirectURL:  redirectURL,
		Scopes:       scopeList(app),
		Endpoint:     oauth2.Endpoint{AuthURL: app.OAuth.AuthorizeURL, TokenURL: app.OAuth.TokenURL, AuthStyle: style},
	}, nil
}

func scopeList(app catalog.App) []string {
	out := make([]string, len(app.OAuth.Scopes))
	for i, s := range app.OAuth.Scopes {
		out[i] = s.Scope
	}
	return out
}

// AuthCodeOptions are the app's extra consent-URL parameters.
func AuthCodeOptions(app catalog.App) []oauth2.AuthCodeOption {
	var opts []oauth2.AuthCodeOption
	if app.OAuth != nil {
		for k, v := range app.OAuth.AuthorizeParams {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
	}
	return opts
}

// Identify reads which external account a fresh token belongs to, the way
// the app's catalog entry says: from the token response, or from its
// identity URL.
func Identify(ctx context.Context, client *http.Client, app catalog.App, tok *oauth2.Token) (ExternalAccount, error) {
	if app.Identity == nil {
		return ExternalAccount{}, nil
	}
	var body []byte
	if app.Identity.FromTokenResponse {
		// The token keeps extra response fields one level deep; rebuild the
		// part of the document the paths need.
		doc := map[string]any{}
		for _, p := range []string{app.Identity.IDPath, app.Identity.NamePath} {
			if head, _, _ := strings.Cut(p, "."); head != "" {
				if v := tok.Extra(head); v != nil {
					doc[head] = v
				}
			}
		}
		var err error
		if body, err = json.Marshal(doc); err != nil {
			return ExternalAccount{}, fmt.Errorf("identity: %w", err)
		}
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, app.Identity.URL, nil)
		if err != nil {
			return ExternalAccount{}, fmt.Errorf("identity request: %w", err)
		}
		req.Header.Set("Accept", "application/json")
		tok.SetAuthHeader(req)
		if client == nil {
			client = http.DefaultClient
		}
		res, err := client.Do(req)
		if err != nil {
			return ExternalAccount{}, fmt.Errorf("identity request: %w", err)
		}
		defer res.Body.Close()
		body, err = io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if err != nil {
			return ExternalAccount{}, fmt.Errorf("identity response: %w", err)
		}
		if res.StatusCode != http.StatusOK {
			return ExternalAccount{}, fmt.Errorf("identity request: %s answered HTTP %d", app.Name, res.StatusCode)
		}
	}
	id, name, err := app.Identity.Extract(body)
	if err != nil {
		return ExternalAccount{}, err
	}
	return ExternalAccount{ID: id, Name: name}, nil
}

// CatalogOAuth resolves a connection's OAuth client from the catalog, for
// the refresher.
func CatalogOAuth(cat *catalog.Catalog, redirectURL string) OAuthConfigFunc {
	return func(_ context.Context, c Connection) (*oauth2.Config, error) {
		app, ok := cat.App(c.AppKey)
		if !ok {
			return nil, fmt.Errorf("app %q is not in the catalog", c.AppKey)
		}
		return OAuthConfig(app, redirectURL)
	}
}
