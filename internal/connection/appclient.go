package connection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/egress"
)

// AppClient calls an app's API with a connection's credential. It is what
// workflow steps use: it attaches the credential, renews an OAuth token the
// app rejects with 401 (or with a credential code in a 2xx body, for apps
// like Slack: catalog errors.inBody) and retries once, and when the credential is truly dead
// it moves the connection to error — raising needs-reauthorization — and
// returns ErrNeedsReauth so the caller can hold its work.
//
// Every request it sends, and every redirect it follows, must go to an
// origin the app declares (catalog apiHosts) or one an owner or admin
// added to the connection; anything else is refused with a
// *HostNotAllowedError before the credential leaves.
type AppClient struct {
	svc     *Service
	r       *Refresher
	catalog *catalog.Catalog
	http    *http.Client
}

// NewAppClient returns a client for apps' APIs. A nil hc refuses private
// addresses except the catalog's own (egress.Policy{}).
func NewAppClient(svc *Service, r *Refresher, cat *catalog.Catalog, hc *http.Client) *AppClient {
	if hc == nil {
		hc = egress.Client(egress.Policy{}, 2*time.Minute)
	}
	return &AppClient{svc: svc, r: r, catalog: cat, http: hc}
}

// MaxResponseBytes bounds what an app's answer may weigh.
const MaxResponseBytes = 10 << 20

// Response is an app's answer, read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Failure is the failure the app reported inside a 2xx answer, read
	// the app's way (catalog errors.inBody); nil when it reported none or
	// the request went to a host the app does not declare (one added to
	// the connection), whose answers are not the app's to judge.
	Failure *catalog.BodyFailure
}

// Do sends the request built by build (called again for the retry, so a
// body can be sent twice) with the connection's credential.
func (c *AppClient) Do(ctx context.Context, connID string, build func(ctx context.Context) (*http.Request, error)) (Response, error) {
	conn, err := c.svc.byID(ctx, connID)
	if err != nil {
		return Response{}, err
	}
	if !conn.Status.Refreshable() {
		return Response{}, ErrNeedsReauth
	}
	app, ok := c.catalog.App(conn.AppKey)
	if !ok {
		return Response{}, fmt.Errorf("app %q is not in the catalog", conn.AppKey)
	}
	hosts, err := c.svc.hostPolicy(ctx, app, conn)
	if err != nil {
		return Response{}, err
	}
	hc := c.guarded(hosts)
	ctx = egress.WithTrusted(ctx, hosts.trusted...)
	for attempt := 1; ; attempt++ {
		req, err := build(ctx)
		if err != nil {
			return Response{}, err
		}
		// Checked before the credential is attached, on what build made.
		if err := hosts.check(req.URL); err != nil {
			return Response{}, err
		}
		if err := c.authorize(ctx, conn, app, req); err != nil {
			return Response{}, err
		}
		res, err := c.send(hc, req)
		if err != nil {
			return Response{}, err
		}
		own := slices.Contains(app.Origins(conn.Metadata), catalog.Origin(req.URL))
		dead, code := rejected(app, res, own)
		if !dead {
			if f, failed := app.BodyFailure(res.Status, res.Body); failed && own {
				res.Failure = &f
			}
			return res, nil
		}
		if app.IsOAuth() && attempt == 1 {
			// The token may have been revoked or rotated early: renew it and
			// try once more. A refresh the app refuses marks the connection.
			// The token the app refused tells whether someone renewed it since.
			rejected := strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
			if _, err := c.r.renewRejected(ctx, connID, rejected); err != nil {
				return res, err
			}
			continue
		}
		reason := fmt.Sprintf("%s rejected the credential (HTTP %d)", app.Name, res.Status)
		if code != "" {
			reason = fmt.Sprintf("%s rejected the credential: %s", app.Name, code)
		}
		if _, err := c.svc.Transition(ctx, connID, StatusError, reason, System, nil); err != nil {
			return res, err
		}
		return res, ErrNeedsReauth
	}
}

func (c *AppClient) authorize(ctx context.Context, conn Connection, app catalog.App, req *http.Request) error {
	if app.IsOAuth() {
		tok, err := c.r.AccessToken(ctx, conn.ID)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
	raw, _, err := c.svc.Secret(ctx, conn.ID)
	if err != nil {
		return err
	}
	cred, err := unmarshalCredential(raw)
	if err != nil {
		return err
	}
	if app.APIKey == nil {
		return fmt.Errorf("%s has no API key scheme", app.Name)
	}
	key := cred.APIKey
	if key == "" {
		key = cred.Fields[app.APIKey.Field]
	}
	switch app.APIKey.Scheme {
	case "basic":
		req.SetBasicAuth(key, app.APIKey.BasicPassword)
	case "header":
		req.Header.Set(app.APIKey.Header, key)
	default:
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return nil
}

// guarded is the client with its redirects held to the connection's hosts
// too: Go drops Authorization on a redirect to another host, but not an
// app's own key header, nor anything on a redirect to a sibling host.
func (c *AppClient) guarded(hosts hostPolicy) *http.Client {
	hc := *c.http
	next := c.http.CheckRedirect
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := hosts.check(req.URL); err != nil {
			return err
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &hc
}

func (c *AppClient) send(hc *http.Client, req *http.Request) (Response, error) {
	res, err := hc.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("call %s: %w", req.URL.Host, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, MaxResponseBytes+1))
	if err != nil {
		return Response{}, fmt.Errorf("read %s's answer: %w", req.URL.Host, err)
	}
	if len(body) > MaxResponseBytes {
		return Response{}, fmt.Errorf("%s answered with more than %d MiB", req.URL.Host, MaxResponseBytes>>20)
	}
	return Response{Status: res.StatusCode, Header: res.Header, Body: bytes.Clone(body)}, nil
}

// rejected says whether the app refused the credential: HTTP 401, or,
// from one of the app's own hosts, a 2xx answer whose body reports one of
// the app's credential codes (catalog errors.inBody.credentialCodes); and
// the app's code if any.
func rejected(app catalog.App, res Response, own bool) (bool, string) {
	if res.Status == http.StatusUnauthorized {
		return true, ""
	}
	if f, failed := app.BodyFailure(res.Status, res.Body); failed && f.Credential && own {
		return true, f.Code
	}
	return false, ""
}
