package web

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

// staticSet serves embedded files at URLs carrying a checksum of their
// content (/static/app.3f2a9c1e.css), cached for a year: a new build gets
// new URLs, so browsers never hold a stale file.
type staticSet struct {
	byURL  map[string]staticFile // "app.3f2a9c1e.css" -> file
	byName map[string]string     // "app.css" -> "/static/app.3f2a9c1e.css"
}

type staticFile struct {
	body        []byte
	contentType string
}

func newStaticSet(fsys fs.FS) (*staticSet, error) {
	s := &staticSet{byURL: map[string]staticFile{}, byName: map[string]string{}}
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		name := path.Base(p)
		sum := sha256.Sum256(body)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:4]) + ext
		ct := mime.TypeByExtension(ext)
		if ct == "" {
			ct = "application/octet-stream"
		}
		s.byURL[hashed] = staticFile{body: body, contentType: ct}
		s.byName[name] = "/static/" + hashed
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index static files: %w", err)
	}
	return s, nil
}

// url is the template function {{static "app.css"}}.
func (s *staticSet) url(name string) (string, error) {
	u, ok := s.byName[name]
	if !ok {
		return "", fmt.Errorf("no static file %q", name)
	}
	return u, nil
}

func (s *staticSet) serve(w http.ResponseWriter, r *http.Request) {
	f, ok := s.byURL[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(f.body)
}

func (s *staticSet) favicon(w http.ResponseWriter, r *http.Request) {
	u, err := s.url("icon.svg")
	if err != nil {
		http.NotFound(w, r)
		return
	}
	http.Redirect(w, r, u, http.StatusMovedPermanently)
}
