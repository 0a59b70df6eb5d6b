package web

import (
	"net/http"
	"strings"
)

// A form posts to an action's own address (…/refresh, …/resume), and the
// action answers with a redirect. An address bar can still come to hold
// such an address (typed, bookmarked, reopened from history), and loading
// it must not be a dead end: a GET of an action's address leads to the
// page the action belongs to, the nearest address above it that is a page.

// recorder registers routes on a mux and remembers the POST addresses
// that have no page of their own.
type recorder struct {
	mux        *http.ServeMux
	gets, post map[string]bool
	order      []string
}

func (rc *recorder) HandleFunc(pattern string, fn func(http.ResponseWriter, *http.Request)) {
	rc.mux.HandleFunc(pattern, fn)
	if rc.gets == nil {
		rc.gets, rc.post = map[string]bool{}, map[string]bool{}
	}
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		return
	}
	switch method {
	case http.MethodGet:
		rc.gets[path] = true
	case http.MethodPost:
		if !rc.post[path] {
			rc.post[path] = true
			rc.order = append(rc.order, path)
		}
	}
}

// backFromPosts serves a GET on every POST address that has none, by f.
func (rc *recorder) backFromPosts(f *pageFinder) {
	for _, path := range rc.order {
		if !rc.gets[path] {
			rc.mux.HandleFunc("GET "+path, f.serve)
			f.back["GET "+path] = true
		}
	}
}

// pageFinder finds the page an action's address belongs to.
type pageFinder struct {
	top, ws *http.ServeMux
	back    map[string]bool // the GET patterns that are ways back, not pages
}

func (f *pageFinder) serve(w http.ResponseWriter, r *http.Request) {
	redirect(w, r, f.pageAbove(r))
}

// pageAbove drops trailing segments of the address until what is left is
// served by a page of its own (not the not-found fallback, not another
// action's way back).
func (f *pageFinder) pageAbove(r *http.Request) string {
	path := strings.TrimSuffix(r.URL.Path, "/")
	for {
		i := strings.LastIndex(path, "/")
		if i <= 0 {
			return "/"
		}
		path = path[:i]
		if f.isPage(r, path) {
			return path
		}
	}
}

func (f *pageFinder) isPage(r *http.Request, path string) bool {
	probe := r.Clone(r.Context())
	probe.Method = http.MethodGet
	probe.URL.Path, probe.URL.RawPath, probe.URL.RawQuery = path, "", ""
	_, pattern := f.top.Handler(probe)
	if pattern == "/" {
		_, pattern = f.ws.Handler(probe)
	}
	if pattern == "" || pattern == "/" || strings.HasSuffix(pattern, "/portal/") {
		return false
	}
	return !f.back[pattern]
}
