package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"taskjuice/internal/account"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/server"
)

var (
	mfaKeyPattern     = regexp.MustCompile(`<code id="mfa-key">([A-Z2-7 ]+)</code>`)
	backupCodePattern = regexp.MustCompile(`\b[a-km-z2-9]{5}-[a-km-z2-9]{5}\b`)
	backupBlock       = regexp.MustCompile(`(?s)<pre class="secret" data-copy>(.*?)</pre>`)
)

func totpCode(t *testing.T, key string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(key, at)
	must(t, err)
	return c
}

// enrollByPage sets MFA up through the Security page as a person would,
// reading the manual key off the page, and returns it with the backup
// codes shown once.
func enrollByPage(t *testing.T, b *browser) (string, []string) {
	t.Helper()
	page := b.get("/account/security")
	wantStatus(t, "security page", page, 200)
	for _, s := range []string{"<h1>Security</h1>", "Multi-factor authentication and recovery codes for your sign-in.", "Multi-factor authentication", "Set up MFA"} {
		if !strings.Contains(page.Body, s) {
			t.Fatalf("security page lacks %q", s)
		}
	}
	wantRedirect(t, "set up", b.post("/account/security/mfa/setup", nil), "/account/security#mfa")
	page = b.get("/account/security")
	for _, s := range []string{"Scan the QR code with your authenticator app, then enter the 6-digit code it generates.", `src="data:image/png;base64,`, "Verify and enable"} {
		if !strings.Contains(page.Body, s) {
			t.Fatalf("setup page lacks %q", s)
		}
	}
	m := mfaKeyPattern.FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatal("setup page shows no manual key")
	}
	key := strings.ReplaceAll(m[1], " ", "")
	wantRedirect(t, "wrong code", b.post("/account/security/mfa/enable", url.Values{"code": {"000000"}}), "/account/security#mfa")
	res := b.post("/account/security/mfa/enable", url.Values{"code": {totpCode(t, key, time.Now())}})
	wantStatus(t, "verify and enable", res, 200)
	block := backupBlock.FindStringSubmatch(res.Body)
	if block == nil {
		t.Fatal("no backup codes shown after enabling")
	}
	codes := backupCodePattern.FindAllString(block[1], -1)
	if len(codes) != account.BackupCodeCount {
		t.Fatalf("backup codes shown: got %d, want %d", len(codes), account.BackupCodeCount)
	}
	after := b.get("/account/security")
	if strings.Contains(after.Body, m[1]) || strings.Contains(after.Body, codes[0]) || !strings.Contains(after.Body, "Enabled") {
		t.Fatal("after enabling, the page must say Enabled and show neither the key nor the backup codes")
	}
	return key, codes
}

// signInWithCode signs in with password then code, and returns the answer
// to the code.
func signInWithCode(t *testing.T, e *env, email, code string) (*browser, response) {
	t.Helper()
	b := e.browser()
	wantRedirect(t, "password step", b.post("/signin", url.Values{"email": {email}, "password": {pw}}), "/signin/mfa")
	page := b.get("/signin/mfa")
	wantStatus(t, "code page", page, 200)
	if !strings.Contains(page.Body, email) {
		t.Fatalf("code page does not say who is signing in")
	}
	return b, b.post("/signin/mfa", url.Values{"code": {code}})
}

func TestMFAEnrollAndSignIn(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		key, codes := enrollByPage(t, owner)
		if strings.Contains(e.log.String(), key) {
			t.Fatal("the MFA secret was logged")
		}
		wantRedirect(t, "sign out", owner.post("/signout", nil), "/signin")

		// The password alone no longer signs in: no session until the code.
		b := e.browser()
		wantRedirect(t, "password step", b.post("/signin", url.Values{"email": {"owner@a.example"}, "password": {pw}}), "/signin/mfa")
		wantRedirect(t, "dashboard before the code", b.get("/dashboard"), "/signin?next=%2Fdashboard")
		wantStatus(t, "wrong code", b.post("/signin/mfa", url.Values{"code": {"000000"}}), 401)
		// The next step's code (the one that enabled MFA was this step's).
		code := totpCode(t, key, time.Now().Add(30*time.Second))
		wantRedirect(t, "right code", b.post("/signin/mfa", url.Values{"code": {code}}), "/dashboard")
		wantStatus(t, "signed in", b.get("/dashboard"), 200)

		// The same code again, in a new sign-in: refused.
		_, res := signInWithCode(t, e, "owner@a.example", code)
		wantStatus(t, "replayed code", res, 401)
		if !strings.Contains(res.Body, account.MsgBadCode) {
			t.Fatalf("replayed code page lacks %q", account.MsgBadCode)
		}
		// A backup code signs in once.
		_, res = signInWithCode(t, e, "owner@a.example", codes[0])
		wantRedirect(t, "backup code", res, "/dashboard")
		_, res = signInWithCode(t, e, "owner@a.example", codes[0])
		wantStatus(t, "backup code again", res, 401)

		// Without a waiting sign-in the code page sends back to the start.
		wantRedirect(t, "code page without a sign-in", e.browser().get("/signin/mfa"), "/signin")
	})
}

func TestRequiredMFAHoldsUnenrolledStaff(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		member := e.signIn("member@a.example")
		res := member.post("/account/security/mfa/require", url.Values{"required": {"on"}, "graceDays": {"0"}})
		wantStatus(t, "member requires MFA", res, 403)
		if !strings.Contains(res.Body, "403 Tenant admin required") {
			t.Fatal(`member's refusal lacks "403 Tenant admin required"`)
		}
		owner := e.signIn("owner@a.example")
		wantRedirect(t, "bad grace", owner.post("/account/security/mfa/require", url.Values{"required": {"on"}, "graceDays": {"soon"}}), "/account/security#require")
		wantRedirect(t, "require MFA", owner.post("/account/security/mfa/require", url.Values{"required": {"on"}, "graceDays": {"0"}}), "/account/security#require")

		// The owner has no MFA either: held too, but can reach the page.
		wantRedirect(t, "held member on the dashboard", member.get("/dashboard"), "/account/security")
		wantRedirect(t, "held member in a workspace", member.get("/acme/workflows"), "/account/security")
		api := member.api("GET", "/api/v1/workspaces", "")
		wantStatus(t, "held member on the API", api, 403)
		if _, msg := apiError(t, api); !strings.Contains(msg, "multi-factor") {
			t.Fatalf("API refusal %q does not say why", msg)
		}
		page := member.get("/account/security")
		wantStatus(t, "held member on the Security page", page, 200)
		if !strings.Contains(page.Body, "requires multi-factor authentication") {
			t.Fatal("Security page does not tell a held member why")
		}
		enrollByPage(t, member)
		wantStatus(t, "enrolled member on the dashboard", member.get("/dashboard"), 200)

		// The roster shows who is enrolled; another account's staff are not
		// in it, and clients are never held.
		enrollByPage(t, owner)
		roster := owner.get("/account/security")
		if !strings.Contains(roster.Body, "member@a.example") || strings.Contains(roster.Body, "owner@b.example") || strings.Contains(roster.Body, "client@acme.example") {
			t.Fatal("roster must list the account's staff and no one else")
		}
		client := e.signIn("client@acme.example")
		wantStatus(t, "client portal", client.get("/portal"), 200)
		wantRedirect(t, "client on the Security page", client.get("/account/security"), "/portal")
		wantRedirect(t, "client sets up MFA", client.post("/account/security/mfa/setup", nil), "/portal")
		wantStatus(t, "other account's staff", e.signIn("owner@b.example").get("/dashboard"), 200)
	})
}

// Behind a trusted proxy the client's own address is what the limits
// count: one client's failures do not slow another's sign-in.
func TestSignInBehindTrustedProxy(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		accounts := account.NewService(d)
		_, _, err := accounts.CreateAccount(ctx, "Agency P", account.NewUser{Email: "owner@p.example", Password: pw})
		must(t, err)
		opts := fullOptions(t, d, accounts, slog.New(slog.DiscardHandler), "https://tj.example")
		opts.TrustedProxies, opts.HSTS = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, true
		s, err := server.New(opts)
		must(t, err)
		post := func(xff, password string) *httptest.ResponseRecorder {
			form := url.Values{"email": {"owner@p.example"}, "password": {password}}
			r := httptest.NewRequest("POST", "https://tj.example/signin", strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Sec-Fetch-Site", "same-origin")
			r.RemoteAddr = "127.0.0.1:40000"
			r.Header.Set("X-Forwarded-For", xff)
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			return w
		}
		var got int
		for i := 0; got != http.StatusTooManyRequests; i++ {
			if i > account.FreePairFailures+12 {
				t.Fatalf("no back-off for the failing client after %d failures", i)
			}
			got = post("1.2.3.4, 203.0.113.9", "wrong password").Code
		}
		// The claimed 1.2.3.4 is not trusted: another claim does not escape.
		if w := post("5.6.7.8, 203.0.113.9", pw); w.Code != http.StatusTooManyRequests {
			t.Fatalf("spoofed left-hand address: got %d, want 429", w.Code)
		}
		w := post("203.0.113.10", pw)
		if w.Code != http.StatusSeeOther {
			t.Fatalf("right password from another client behind the proxy: got %d, want 303", w.Code)
		}
		if got := w.Header().Get("Strict-Transport-Security"); !strings.HasPrefix(got, "max-age=") {
			t.Fatalf("HSTS header %q on an https base URL", got)
		}
	})
}

func TestNoHSTSOnPlainHTTP(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		if got := e.browser().get("/signin").Header.Get("Strict-Transport-Security"); got != "" {
			t.Fatalf("HSTS %q on an http base URL", got)
		}
	})
}
