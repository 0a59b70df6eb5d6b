package server

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"taskjuice/internal/textcheck"
)

// Largest bodies the text check reads ahead of the handler: above the
// limits of the API, webhooks and workflow imports, and net/http's own
// limit on a URL-encoded form, so a larger body is one its handler
// refuses for its size anyway (and the database backstop stays behind).
const (
	maxCheckedBody = 2 << 20
	maxCheckedForm = 10 << 20
)

// checkText refuses a request carrying text that cannot be stored (a NUL
// character or invalid UTF-8) in its path, query, headers, or form or JSON
// body, with one message, before any handler can pass it to the database.
// Bodies of other kinds (a webhook's binary payload) are the handler's to
// judge; the body is read here and handed on unchanged.
func checkText(refuse func(http.ResponseWriter, *http.Request), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !storableRequest(r) {
			refuse(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func storableRequest(r *http.Request) bool {
	if !textcheck.Storable(r.URL.Path) {
		return false
	}
	if q, _ := url.ParseQuery(r.URL.RawQuery); !textcheck.StorableValues(q) {
		return false
	}
	for name, vs := range r.Header {
		// The cookie parser drops any cookie whose value is not plain
		// ASCII, so a stray cookie set by another site on this host must
		// not lock people out.
		if name == "Cookie" {
			continue
		}
		for _, v := range vs {
			if !textcheck.Storable(v) {
				return false
			}
		}
	}
	return storableBody(r)
}

// storableBody reads a form or JSON body (up to its limit), puts it back
// for the handler, and judges it by its content type.
func storableBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := mt == "application/json" || strings.HasSuffix(mt, "+json")
	isForm := mt == "application/x-www-form-urlencoded"
	isMultipart := mt == "multipart/form-data" && params["boundary"] != ""
	// Without a content type the API and webhooks still read JSON.
	if !isJSON && !isForm && !isMultipart && mt != "" {
		return true
	}
	limit := int64(maxCheckedBody)
	if isForm {
		limit = maxCheckedForm
	}
	if r.ContentLength > limit {
		return true
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	rest := r.Body
	r.Body = readCloser{io.MultiReader(bytes.NewReader(body), rest), rest}
	if err != nil || int64(len(body)) > limit {
		return true // the handler meets the same error, or its own limit
	}
	switch {
	case isForm:
		form, _ := url.ParseQuery(string(body))
		return textcheck.StorableValues(form)
	case isMultipart:
		return storableMultipart(body, params["boundary"])
	case isJSON || json.Valid(body):
		return textcheck.StorableJSON(body)
	}
	return true
}

// storableMultipart judges the text fields of a multipart form and the
// names of its files; a file's content is whatever the file holds.
func storableMultipart(body []byte, boundary string) bool {
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := mr.NextPart()
		if err != nil {
			return true // the end, or a malformed form the handler reports
		}
		if !textcheck.Storable(p.FormName()) || !textcheck.Storable(p.FileName()) {
			return false
		}
		if p.FileName() != "" {
			continue
		}
		v, err := io.ReadAll(p)
		if err != nil {
			return true
		}
		if !textcheck.Storable(string(v)) {
			return false
		}
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}

// refuseText answers a request carrying unstorable text: the API's JSON
// error shape for the API and webhooks, the error page for everything else.
func (s *Server) refuseText(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/webhooks/") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": textcheck.ErrUnstorable.Code, "message": textcheck.ErrUnstorable.Message}})
		return
	}
	s.pages.ErrorPage(w, r, textcheck.ErrUnstorable)
}
