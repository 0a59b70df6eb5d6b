// Package apperr is the one error vocabulary the domain packages share with
// the HTTP layers: each error carries a kind (which becomes a status code) and
// a message that is safe to show a person. Anything else is an internal error
// whose text never leaves the server.
package apperr

import (
	"errors"
	"fmt"
)

// Kind says what went wrong in terms a caller can act on.
type Kind int

const (
	KindInvalid      Kind = iota + 1 // the input is malformed (422)
	KindConflict                     // the input clashes with existing data (409)
	KindNotFound                     // no such thing, or not visible to the caller (404)
	KindForbidden                    // the caller may not do this (403)
	KindUnauthorized                 // the caller is not signed in (401)
	KindTooMany                      // too many attempts (429)
	KindBadRequest                   // the request itself cannot be understood (400)
	KindTooLarge                     // the request body is over the limit (413)
	KindUpstream                     // a third-party app could not be reached (502)
	KindGone                         // it existed but is used up or expired for good (410)
)

// Error is a user-facing error: Message is written for a person, Field names
// the input it concerns (if any), Code is a stable machine-readable word.
type Error struct {
	Kind    Kind
	Code    string
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// ErrNotFound is the sentinel for a missing (or invisible) record.
var ErrNotFound = NotFound("Not found")

// NotFound reports a missing (or invisible) thing, in words for a person.
func NotFound(message string) *Error {
	return &Error{Kind: KindNotFound, Code: "not_found", Message: message}
}

// Explain replaces the message of a not-found error with one that says what
// was not found; other errors pass through.
func Explain(err error, notFound string) error {
	if IsNotFound(err) {
		return NotFound(notFound)
	}
	return err
}

// Invalid reports malformed input for one field.
func Invalid(field, message string) *Error {
	return &Error{Kind: KindInvalid, Code: "invalid", Field: field, Message: message}
}

// Conflict reports input that clashes with existing data.
func Conflict(code, field, message string) *Error {
	return &Error{Kind: KindConflict, Code: code, Field: field, Message: message}
}

// Forbidden reports an action the caller's role does not allow.
func Forbidden(message string) *Error {
	return &Error{Kind: KindForbidden, Code: "forbidden", Message: message}
}

// Unauthorized reports a missing or invalid credential.
func Unauthorized(message string) *Error {
	return &Error{Kind: KindUnauthorized, Code: "unauthorized", Message: message}
}

// TooMany reports a rate limit.
func TooMany(message string) *Error {
	return &Error{Kind: KindTooMany, Code: "too_many_attempts", Message: message}
}

// BadRequest reports a request that cannot be understood at all.
func BadRequest(code, message string) *Error {
	return &Error{Kind: KindBadRequest, Code: code, Message: message}
}

// Upstream reports that an app TaskJuice depends on could not be reached.
func Upstream(message string) *Error {
	return &Error{Kind: KindUpstream, Code: "upstream_unavailable", Message: message}
}

// Gone reports something that existed but can no longer be used: an
// expired or already used link.
func Gone(code, message string) *Error {
	return &Error{Kind: KindGone, Code: code, Message: message}
}

// As returns the user-facing error inside err, if there is one.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// IsNotFound reports whether err is (or wraps) a not-found error.
func IsNotFound(err error) bool {
	e, ok := As(err)
	return ok && e.Kind == KindNotFound
}

// Is reports whether err is (or wraps) a user-facing error of kind k.
func Is(err error, k Kind) bool {
	e, ok := As(err)
	return ok && e.Kind == k
}

// Wrap adds context to an internal error. It exists so call sites read the
// same everywhere; it is fmt.Errorf with %w.
func Wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Status is the HTTP status for err: its kind's status for a user-facing
// error, 500 for anything else.
func Status(err error) int {
	e, ok := As(err)
	if !ok {
		return 500
	}
	switch e.Kind {
	case KindInvalid:
		return 422
	case KindConflict:
		return 409
	case KindNotFound:
		return 404
	case KindForbidden:
		return 403
	case KindUnauthorized:
		return 401
	case KindTooMany:
		return 429
	case KindBadRequest:
		return 400
	case KindTooLarge:
		return 413
	case KindUpstream:
		return 502
	case KindGone:
		return 410
	}
	return 500
}

// Fields collects the per-field messages of err, which may join several
// user-facing errors (errors.Join). Errors without a field are skipped.
func Fields(err error) map[string]string {
	out := map[string]string{}
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if e, ok := As(err); ok && e.Field != "" {
			if _, seen := out[e.Field]; !seen {
				out[e.Field] = e.Message
			}
		}
	}
	walk(err)
	return out
}
