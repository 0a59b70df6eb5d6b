package trigger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"taskjuice/internal/connection"
)

// refusedError is an app's 4xx answer (other than the ones that hold or
// slow a poll): the request itself was refused. Sources that expect a
// status (Gmail's 404 on an expired history id) look for it.
type refusedError struct {
	status int
	msg    string
}

func (e *refusedError) Error() string { return e.msg }

// refusedStatus is the HTTP status of an app's refusal, 0 for any other
// error.
func refusedStatus(err error) int {
	var r *refusedError
	if errors.As(err, &r) {
		return r.status
	}
	return 0
}

// fetch is call for any method: it sends body (JSON, when not nil) and
// reads a 2xx JSON answer into out, classified like call, and returns the
// answer's headers (a source may read the app's Date from them).
func (c pollCall) fetch(ctx context.Context, method, rawURL string, body any, out any) (http.Header, error) {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode the request to %s: %w", c.app.Name, err)
		}
		payload = b
	}
	return c.exchange(ctx, method, rawURL, "application/json", payload, out)
}

// exchange sends one request through the connection, with body
// (contentType; none when body is nil), and reads a 2xx JSON answer into
// out (nil: the answer is not read). A status in gone (DELETE's 404:
// already deleted) counts as success and reads nothing. Failures are
// classified: ErrNeedsReauth (held), *transientError (5xx, 429, the
// network: back off), *refusedError (the app refused the request).
func (c pollCall) exchange(ctx context.Context, method, rawURL, contentType string, body []byte, out any, gone ...int) (http.Header, error) {
	res, err := c.api.Do(ctx, c.conn, func(ctx context.Context) (*http.Request, error) {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", contentType)
		}
		return req, nil
	})
	if errors.Is(err, connection.ErrNeedsReauth) {
		return nil, errHeld
	}
	var host *connection.HostNotAllowedError
	if errors.As(err, &host) {
		return nil, err
	}
	if err != nil {
		// The network, a timeout, or the token endpoint failing for now.
		return nil, &transientError{msg: fmt.Sprintf("%s could not be reached: %v", c.app.Name, err)}
	}
	if slices.Contains(gone, res.Status) {
		return res.Header, nil
	}
	switch {
	case res.Status == http.StatusTooManyRequests:
		return res.Header, &transientError{msg: fmt.Sprintf("%s asked to slow down (HTTP 429)", c.app.Name), retryAfter: parseRetryAfter(res.Header.Get("Retry-After"))}
	case res.Status >= 500:
		return res.Header, &transientError{msg: fmt.Sprintf("%s answered HTTP %d", c.app.Name, res.Status)}
	case res.Status/100 != 2:
		if msg := appErrorMessage(res.Body); msg != "" {
			return res.Header, &refusedError{status: res.Status, msg: fmt.Sprintf("%s refused the request (HTTP %d): %s", c.app.Name, res.Status, msg)}
		}
		return res.Header, &refusedError{status: res.Status, msg: fmt.Sprintf("%s refused the request (HTTP %d)", c.app.Name, res.Status)}
	}
	if out == nil {
		return res.Header, nil
	}
	if err := json.Unmarshal(res.Body, out); err != nil {
		return res.Header, fmt.Errorf("%s answered with something other than the expected JSON", c.app.Name)
	}
	return res.Header, nil
}

// appErrorMessage reads the message of the error shapes the apps use:
// {"message": …} (HubSpot, GitHub, Sandbox), {"error": {"message": …}}
// (Google, Microsoft Graph, Stripe), {"error": "…"} (Slack's code).
func appErrorMessage(body []byte) string {
	var e struct {
		Message string          `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	if e.Message != "" {
		return e.Message
	}
	var nested struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(e.Error, &nested) == nil && nested.Message != "" {
		return nested.Message
	}
	var s string
	if json.Unmarshal(e.Error, &s) == nil {
		return s
	}
	return ""
}

// answerTime is the app's own clock from an answer's Date header, or now
// when it sent none.
func answerTime(h http.Header, now func() time.Time) time.Time {
	if t, err := http.ParseTime(h.Get("Date")); err == nil {
		return t
	}
	return now()
}
