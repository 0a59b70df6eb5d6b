package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// AdminClient drives the admin API of a sandbox running elsewhere (the
// "taskjuice sandbox" commands use it).
type AdminClient struct {
	base  string
	token string
	hc    *http.Client
}

// NewAdminClient returns a client for the sandbox whose root is baseURL.
// A nil hc means a client with a 30-second timeout.
func NewAdminClient(baseURL, token string, hc *http.Client) (*AdminClient, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sandbox URL %q: want an absolute http(s) URL such as http://127.0.0.1:8090", baseURL)
	}
	if token == "" {
		return nil, errors.New("an admin token is required")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &AdminClient{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}, nil
}

// APIError is an error answer from the sandbox.
type APIError struct {
	Status  int
	Code    string
	Message string
}

// Is makes a "not_found" answer match ErrNotFound.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound && e.Code == "not_found"
}

func (e *APIError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("sandbox answered %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("sandbox answered %d", e.Status)
}

func (c *AdminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("sandbox request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("sandbox request: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read sandbox answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode}
		var ej struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &ej) == nil {
			e.Code, e.Message = ej.Error, ej.Message
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode sandbox answer: %w", err)
		}
	}
	return nil
}

// RevokeGrant revokes one grant.
func (c *AdminClient) RevokeGrant(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/admin/revoke", revokeRequest{GrantID: id}, nil)
}

// RevokeAccount revokes every grant of an account and says how many.
func (c *AdminClient) RevokeAccount(ctx context.Context, name string) (int, error) {
	var out revokeResponse
	err := c.do(ctx, http.MethodPost, "/admin/revoke", revokeRequest{Account: name}, &out)
	return out.Revoked, err
}

// FailNext makes the next n token requests fail with kind; retryAfter is
// sent in whole seconds.
func (c *AdminClient) FailNext(ctx context.Context, n int, kind FaultKind, retryAfter time.Duration) error {
	secs := int((retryAfter + time.Second - 1) / time.Second)
	return c.do(ctx, http.MethodPost, "/admin/fail", failRequest{Count: n, Kind: kind, RetryAfterSeconds: secs}, nil)
}

// Emit posts n messages "text 1" … "text n" to a channel of an account.
func (c *AdminClient) Emit(ctx context.Context, account, channel, text string, n int) ([]Message, error) {
	var out struct {
		Messages []Message `json:"messages"`
	}
	err := c.do(ctx, http.MethodPost, "/admin/emit", emitRequest{Account: account, Channel: channel, Text: text, Count: n}, &out)
	return out.Messages, err
}

// FailDeliveries makes the next n webhook delivery attempts fail.
func (c *AdminClient) FailDeliveries(ctx context.Context, n int) error {
	return c.do(ctx, http.MethodPost, "/admin/deliveries/fail", map[string]int{"count": n}, nil)
}

// SetLifetimes changes the token lifetimes (zero = unchanged) and returns
// those in force.
func (c *AdminClient) SetLifetimes(ctx context.Context, access, refresh time.Duration) (Lifetimes, error) {
	var out Lifetimes
	err := c.do(ctx, http.MethodPost, "/admin/lifetimes", Lifetimes{AccessTTL: access, RefreshTTL: refresh}, &out)
	return out, err
}

// Stats returns the sandbox's counters.
func (c *AdminClient) Stats(ctx context.Context) (Stats, error) {
	var out Stats
	err := c.do(ctx, http.MethodGet, "/admin/stats", nil, &out)
	return out, err
}

// Grants lists the sandbox's grants.
func (c *AdminClient) Grants(ctx context.Context) ([]Grant, error) {
	var out grantsResponse
	err := c.do(ctx, http.MethodGet, "/admin/grants", nil, &out)
	return out.Grants, err
}

var (
	requestField = regexp.MustCompile(`name="request" value="([^"]*)"`)
	problemText  = regexp.MustCompile(`(?s)class="problem" role="alert">(.*?)</p>`)
)

// Consent answers the sandbox's consent page the way a person would: it
// opens authURL (an authorization request), fills in the account name and
// presses Allow or Deny. It returns the URL the sandbox redirects to, with
// code and state (or error) in its query; it does not follow it. An
// authorization request the sandbox rejects returns an error carrying the
// message on the error page.
func Consent(ctx context.Context, hc *http.Client, authURL, account string, allow bool) (*url.URL, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	noFollow := *hc
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("consent page: %w", err)
	}
	resp, err := noFollow.Do(req)
	if err != nil {
		return nil, fmt.Errorf("consent page: %w", err)
	}
	page, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("consent page: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, pageError(resp, page)
	}
	m := requestField.FindSubmatch(page)
	if m == nil {
		return nil, errors.New("consent page: no consent form on the page")
	}
	decision := "deny"
	if allow {
		decision = "allow"
	}
	form := url.Values{"request": {html.UnescapeString(string(m[1]))}, "account": {account}, "decision": {decision}}
	action, err := resp.Request.URL.Parse("authorize")
	if err != nil {
		return nil, fmt.Errorf("consent form: %w", err)
	}
	post, err := http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("consent form: %w", err)
	}
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = noFollow.Do(post)
	if err != nil {
		return nil, fmt.Errorf("consent form: %w", err)
	}
	page, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, pageError(resp, page)
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("consent redirect: %w", err)
	}
	return loc, nil
}

func pageError(resp *http.Response, page []byte) error {
	e := &APIError{Status: resp.StatusCode}
	if m := problemText.FindSubmatch(page); m != nil {
		e.Message = html.UnescapeString(string(m[1]))
	}
	return e
}
