package trigger

import (
	"context"
	"fmt"
)

// send sends one request with a body (contentType; none when body is nil)
// and reads a 2xx JSON answer into out (nil: the answer is not read). A
// status in gone (DELETE's 404: already deleted) counts as success and
// reads nothing. Failures are classified as call classifies them.
func (c pollCall) send(ctx context.Context, method, rawURL, contentType string, body []byte, out any, gone ...int) error {
	_, err := c.exchange(ctx, method, rawURL, contentType, body, out, gone...)
	return err
}

// apiBase is the app's first API origin, which its calls are built on.
func (c pollCall) apiBase() (string, error) {
	if len(c.app.APIHosts) == 0 {
		return "", fmt.Errorf("%s declares no API host", c.app.Name)
	}
	return c.app.APIHosts[0], nil
}
