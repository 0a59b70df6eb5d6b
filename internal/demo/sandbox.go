package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"taskjuice/internal/sandbox"
)

// ConnectSandbox gives the demo workspace a Sandbox Chat connection made
// through the real consent flow, over HTTP, as the demo owner would: sign
// in, "Connect New Account", the sandbox's consent screen, the callback.
// addr is the address the server listens on; every request goes there
// whatever host baseURL names, so this works before any DNS or proxy does.
func ConnectSandbox(ctx context.Context, baseURL, addr, password string) error {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	post := func(path string, form url.Values) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+path, strings.NewReader(form.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		res.Body.Close()
		return res, nil
	}
	res, err := post("/signin", url.Values{"email": {OwnerEmail}, "password": {password}})
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	if res.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("sign in: HTTP %d", res.StatusCode)
	}
	res, err = post("/"+WorkspaceSlug+"/connections/new", url.Values{"app": {"sandbox-chat"}, "label": {"Sandbox Chat"}})
	if err != nil {
		return fmt.Errorf("start consent: %w", err)
	}
	authURL := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || authURL == "" {
		return fmt.Errorf("start consent: HTTP %d", res.StatusCode)
	}
	callback, err := sandbox.Consent(ctx, hc, authURL, "Acme Chat", true)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, callback.String(), nil)
	if err != nil {
		return err
	}
	res, err = hc.Do(req)
	if err != nil {
		return fmt.Errorf("consent callback: %w", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "/connections/") {
		return errors.New("consent callback did not complete the connection")
	}
	// Sign out: the session existed only for this.
	_, _ = post("/signout", nil)
	return nil
}
