package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/textcheck"
	"taskjuice/internal/workflow"
)

// MaxBodyBytes limits every request body.
const MaxBodyBytes = 1 << 20

var errNoRoute = apperr.NotFound("No such API endpoint; see /api/v1/openapi.json")

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
	// Problems are the publish gate's findings when a workflow does not
	// compile.
	Problems []workflow.Problem `json:"problems,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// writeError sends err in the one error shape. A user-facing error's message
// goes out as is; anything else is logged once and answered with a generic
// 500, so no internal detail reaches the caller.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if db.IsUnstorableText(err) {
		log.WarnContext(r.Context(), "text the database cannot store got past the edge check", "method", r.Method, "path", r.URL.Path, "err", err)
		err = textcheck.ErrUnstorable
	}
	status := apperr.Status(err)
	body := errorBody{Error: errorDetail{Code: "internal", Message: "Something went wrong on our side; it has been logged."}}
	var ce *workflow.CompileError
	if errors.As(err, &ce) {
		status = http.StatusUnprocessableEntity
		body.Error = errorDetail{Code: "compilation_failed", Message: workflow.MsgCompilationFailed, Problems: ce.Problems}
	} else if e, ok := apperr.As(err); ok {
		body.Error.Code, body.Error.Message = e.Code, e.Message
		if f := apperr.Fields(err); len(f) > 0 {
			body.Error.Fields = f
		}
	} else {
		log.ErrorContext(r.Context(), "api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="taskjuice"`)
	}
	writeJSON(w, status, body)
}

// decode reads a JSON object from the body into v with clear messages for
// each way it can go wrong, and a size limit.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &apperr.Error{Kind: apperr.KindBadRequest, Code: "unsupported_media_type",
				Message: "Send the body as JSON with Content-Type: application/json"}
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
	case errors.As(err, &tooLarge):
		return tooLargeErr
	case errors.Is(err, io.EOF):
		return apperr.BadRequest("empty_body", "The request body is empty; send a JSON object")
	case errors.As(err, &syntaxErr):
		return apperr.BadRequest("malformed_json", fmt.Sprintf("The request body is not valid JSON (error at byte %d)", syntaxErr.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.BadRequest("malformed_json", "The request body is not valid JSON (it ends too early)")
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return apperr.BadRequest("malformed_json", "The request body must be a JSON object")
		}
		return apperr.BadRequest("wrong_type", fmt.Sprintf("Field %q must be a %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String())))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return apperr.BadRequest("unknown_field", "Unknown field "+strings.TrimPrefix(err.Error(), "json: unknown field ")+"; see /api/v1/openapi.json")
	default:
		return apperr.BadRequest("malformed_json", "The request body could not be read as JSON")
	}
	// Exactly one value: trailing data is a mistake worth reporting.
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		var tl *http.MaxBytesError
		if errors.As(err, &tl) {
			return tooLargeErr
		}
		return apperr.BadRequest("malformed_json", "The request body must hold a single JSON object")
	}
	return nil
}

var tooLargeErr = &apperr.Error{Kind: apperr.KindTooLarge, Code: "body_too_large",
	Message: fmt.Sprintf("The request body is larger than %d KiB", MaxBodyBytes>>10)}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "map", "struct":
		return "object"
	case "slice", "array":
		return "array"
	default:
		return "number"
	}
}

// authed resolves the caller before the handler runs; an unauthenticated
// request gets 401.
func (h *Handler) authed(fn func(w http.ResponseWriter, r *http.Request, p account.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := h.auth.Request(r)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		fn(w, r.WithContext(account.WithActor(r.Context(), p.User.ID)), p)
	}
}
