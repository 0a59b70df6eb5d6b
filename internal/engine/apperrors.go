package engine

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"taskjuice/internal/catalog"
)

// maxRetryAfter bounds how long a step waits on an app's Retry-After.
const maxRetryAfter = time.Hour

// bodyFailure is the step error of a 2xx answer whose body reports a
// failure the app's way (catalog errors.inBody), from an app action or an
// HTTP Request step bound to the app's connection: the app's own code and
// message, the HTTP status it came with, and whether the app's
// documentation calls that code transient.
func bodyFailure(appName string, status int, body []byte, f catalog.BodyFailure) *StepError {
	code, msg := f.Code, f.Message
	if code == "" {
		code = "REQUEST_REJECTED"
	}
	if msg == "" {
		if f.Code != "" {
			msg = fmt.Sprintf("%s answered HTTP %d with the error %s", appName, status, f.Code)
		} else {
			msg = fmt.Sprintf("%s answered HTTP %d but reported a failure", appName, status)
		}
	}
	snippet := string(body)
	if len(snippet) > 500 {
		snippet = snippet[:500] + "…"
	}
	return &StepError{Code: code, Message: msg, ProviderStatus: status, Retryable: f.Retryable, Detail: snippet}
}

// withRetryAfter records on a retryable step error how long the app asked
// to wait (Retry-After: seconds or an HTTP date).
func withRetryAfter(se *StepError, h http.Header) *StepError {
	if se == nil || !se.Retryable {
		return se
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return se
	}
	var wait time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		wait = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		wait = time.Until(at)
	}
	if wait > 0 {
		se.RetryAfterSeconds = int(math.Ceil(min(wait, maxRetryAfter).Seconds()))
	}
	return se
}
