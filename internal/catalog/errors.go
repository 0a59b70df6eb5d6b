package catalog

import (
	"encoding/json"
	"reflect"
	"slices"
)

// ErrorConvention says how an app reports that a call failed, following
// its API documentation. Every app's non-2xx answers are failures; InBody
// adds the failures an app reports inside a 2xx answer.
type ErrorConvention struct {
	// Doc is the https page of the app's documentation the convention
	// follows; empty for an API without public documentation (the
	// sandbox's is documented in its package).
	Doc string `json:"doc,omitempty"`
	// Note says in a sentence what the documentation says, e.g. "HTTP
	// status codes only; the body of a 4xx names the error".
	Note string `json:"note"`
	// InBody recognises a failure reported inside a 2xx answer; nil when
	// the app reports failures by HTTP status alone.
	InBody *BodyError `json:"inBody,omitempty"`
}

// BodyError recognises a failure an app reports inside a 2xx answer, as
// Slack's Web API does with HTTP 200 and {"ok": false, "error":
// "channel_not_found"}, and sorts its error codes: credential codes mean
// the credential no longer works (treated like HTTP 401: the token is
// renewed once, then the connection needs reauthorization), retryable
// codes mean the same call may succeed later, and any other code is a
// plain failure.
type BodyError struct {
	// Field is the dotted path of the field that signals failure, e.g. "ok".
	Field string `json:"field"`
	// Equals is the JSON value of Field that means failure, e.g. false.
	Equals any `json:"equals"`
	// CodeField is the dotted path of the error code, e.g. "error".
	CodeField string `json:"codeField"`
	// MessageField is the dotted path of a human-readable message, when
	// the app gives one.
	MessageField string `json:"messageField,omitempty"`
	// CredentialCodes are the codes meaning the credential is dead.
	CredentialCodes []string `json:"credentialCodes,omitempty"`
	// RetryableCodes are the codes of transient failures, e.g. "ratelimited".
	RetryableCodes []string `json:"retryableCodes,omitempty"`
}

// BodyFailure is a failure read from a 2xx answer by a BodyError rule.
type BodyFailure struct {
	// Code is the app's error code; empty when the answer has none.
	Code string
	// Message is the app's message; empty when it gives none.
	Message string
	// Credential is true for a code meaning the credential is dead.
	Credential bool
	// Retryable is true for a code of a transient failure.
	Retryable bool
}

// Match reads a 2xx answer's body and reports the failure it holds, or
// false when it reports success (or is not JSON, or the rule is empty).
func (r BodyError) Match(body []byte) (BodyFailure, bool) {
	if r.Field == "" {
		return BodyFailure{}, false
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return BodyFailure{}, false
	}
	// Equals was decoded with the same decoder settings, so numbers
	// compare as float64 on both sides.
	if v, ok := lookup(doc, r.Field); !ok || !reflect.DeepEqual(v, r.Equals) {
		return BodyFailure{}, false
	}
	var f BodyFailure
	if v, ok := lookup(doc, r.CodeField); ok {
		f.Code = scalarString(v)
	}
	if v, ok := lookup(doc, r.MessageField); ok {
		f.Message = scalarString(v)
	}
	if f.Code != "" {
		f.Credential = slices.Contains(r.CredentialCodes, f.Code)
		f.Retryable = slices.Contains(r.RetryableCodes, f.Code)
	}
	return f, true
}

// BodyFailure reads a 2xx answer's body the app's way (Errors.InBody): it
// reports the failure the body holds, or false when the app reports
// failures by HTTP status alone or the body says the call succeeded.
func (a App) BodyFailure(status int, body []byte) (BodyFailure, bool) {
	if status/100 != 2 || a.Errors == nil || a.Errors.InBody == nil {
		return BodyFailure{}, false
	}
	return a.Errors.InBody.Match(body)
}
