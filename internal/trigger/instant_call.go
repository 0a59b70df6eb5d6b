package trigger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"taskjuice/internal/connection"
)

// send sends one request with a body (contentType; none when body is nil)
// and reads a 2xx JSON answer into out (nil: the answer is not read). A
// status in gone (DELETE's 404: already deleted) counts as success and
// reads nothing. Failures are classified as call classifies them.
func (c pollCall) send(ctx context.Context, method, rawURL, contentType string, body []byte, out any, gone ...int) error {
	res, err := c.api.Do(ctx, c.conn, func(ctx context.Context) (*http.Request, error) {
		var r *http.Request
		var err error
		if body == nil {
			r, err = http.NewRequestWithContext(ctx, method, rawURL, nil)
		} else {
			r, err = http.NewRequestWithContext(ctx, method, rawURL, bytes.NewReader(body))
		}
		if err == nil && body != nil {
			r.Header.Set("Content-Type", contentType)
		}
		return r, err
	})
	if errors.Is(err, connection.ErrNeedsReauth) {
		return errHeld
	}
	var host *connection.HostNotAllowedError
	if errors.As(err, &host) {
		return err
	}
	if err != nil {
		return &transientError{msg: fmt.Sprintf("%s could not be reached: %v", c.app.Name, err)}
	}
	for _, g := range gone {
		if res.Status == g {
			return nil
		}
	}
	switch {
	case res.Status == http.StatusTooManyRequests:
		return &transientError{msg: fmt.Sprintf("%s asked to slow down (HTTP 429)", c.app.Name), retryAfter: parseRetryAfter(res.Header.Get("Retry-After"))}
	case res.Status >= 500:
		return &transientError{msg: fmt.Sprintf("%s answered HTTP %d", c.app.Name, res.Status)}
	case res.Status/100 != 2:
		return fmt.Errorf("%s refused the request (HTTP %d)%s", c.app.Name, res.Status, errorMessage(res.Body))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(res.Body, out); err != nil {
		return fmt.Errorf("%s answered with something other than the expected JSON", c.app.Name)
	}
	return nil
}

// errorMessage reads an app's error message from the usual shapes:
// {"message"} (GitHub), {"error":{"message"}} (Stripe), {"error":"code"}
// (Slack); ": message" or "".
func errorMessage(body []byte) string {
	var e struct {
		Message string          `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	if e.Message != "" {
		return ": " + e.Message
	}
	var nested struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(e.Error, &nested) == nil && nested.Message != "" {
		return ": " + nested.Message
	}
	var code string
	if json.Unmarshal(e.Error, &code) == nil && code != "" {
		return ": " + code
	}
	return ""
}

// apiBase is the app's first API origin, which its calls are built on.
func (c pollCall) apiBase() (string, error) {
	if len(c.app.APIHosts) == 0 {
		return "", fmt.Errorf("%s declares no API host", c.app.Name)
	}
	return c.app.APIHosts[0], nil
}
