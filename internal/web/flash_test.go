package web

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"taskjuice/internal/authn"
)

// request returns a request carrying a session cookie (when session is not
// empty) and the cookies w set.
func requestWith(session string, w *httptest.ResponseRecorder, path string) *http.Request {
	r := httptest.NewRequest("GET", path, nil)
	if session != "" {
		r.AddCookie(&http.Cookie{Name: authn.SessionCookie, Value: session})
	}
	if w != nil {
		for _, c := range w.Result().Cookies() {
			r.AddCookie(c)
		}
	}
	return r
}

func TestFlashErrorIsSignedForItsSession(t *testing.T) {
	w := httptest.NewRecorder()
	setFlashError(w, requestWith("session-a", nil, "/x"), "Connection cannot be refreshed.")

	if _, got := takeFlash(httptest.NewRecorder(), requestWith("session-a", w, "/x")); got != "Connection cannot be refreshed." {
		t.Fatalf("same session: got %q, want the message", got)
	}
	if _, got := takeFlash(httptest.NewRecorder(), requestWith("session-b", w, "/x")); got != "" {
		t.Fatalf("another session: got %q, want nothing", got)
	}
	if _, got := takeFlash(httptest.NewRecorder(), requestWith("", w, "/x")); got != "" {
		t.Fatalf("no session: got %q, want nothing", got)
	}
	forged := httptest.NewRequest("GET", "/x", nil)
	forged.AddCookie(&http.Cookie{Name: authn.SessionCookie, Value: "session-a"})
	forged.AddCookie(&http.Cookie{Name: flashCookie, Value: "!eyJlIjoiUGF5IGhlcmUifQ.bogus"})
	if _, got := takeFlash(httptest.NewRecorder(), forged); got != "" {
		t.Fatalf("forged cookie: got %q, want nothing", got)
	}
}

func TestKeptFormOnlyOnItsPage(t *testing.T) {
	w := httptest.NewRecorder()
	setKept(w, requestWith("s", nil, "/acme/workspace/members/invite"), kept{Page: "/acme/workspace/members", Error: "Enter an email address", Values: map[string]string{"email": "nope"}})
	if k, ok := keptForm(requestWith("s", w, "/acme/workspace/members")); !ok || k.Values["email"] != "nope" || k.Error != "Enter an email address" {
		t.Fatalf("on its page: got %+v, %v", k, ok)
	}
	if _, ok := keptForm(requestWith("s", w, "/acme/clients/requests")); ok {
		t.Fatal("another page reads the refused form")
	}
	if _, failed := takeFlash(httptest.NewRecorder(), requestWith("s", w, "/acme/workspace/members")); failed != "" {
		t.Fatalf("a kept form's message also shows as the page's error: %q", failed)
	}
}
