package trigger

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

const testSecret = "s3cr3t-Value-9f2c71"

// webhookFixture is a workflow with a webhook endpoint and a secret set.
type webhookFixture struct {
	d        *db.DB
	svc      *Webhooks
	starter  *fakeStarter
	wfs      *fakeWorkflows
	log      *logBuffer
	workflow string
	token    string
}

func newWebhookFixture(t *testing.T, d *db.DB, o Options) *webhookFixture {
	t.Helper()
	f := &webhookFixture{d: d, starter: &fakeStarter{}, wfs: &fakeWorkflows{}, log: &logBuffer{}}
	f.wfs.set(KindWebhook, `{"auth":"none"}`, true)
	o.Log = f.log.logger()
	f.svc = New(d, testKeyring(t), f.starter, f.wfs, o)
	f.workflow = newWorkflow(t, d)
	ctx := context.Background()
	var err error
	if f.token, err = f.svc.Endpoint(ctx, f.workflow); err != nil {
		t.Fatalf("Endpoint: %v", err)
	}
	if err := f.svc.SetSecret(ctx, f.workflow, testSecret); err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	return f
}

// serve routes the request the way the server registers the handler.
func (f *webhookFixture) serve(r *http.Request) *httptest.ResponseRecorder {
	mux := http.NewServeMux()
	mux.Handle("/webhooks/{token}", f.svc)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	return rec
}

func sign(h func() hash.Hash, body string) string {
	m := hmac.New(h, []byte(testSecret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// errorCode reads {"error":{"code":...}}, failing the test on another shape.
func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("body %q is not the error shape (%v)", rec.Body.String(), err)
	}
	return e.Error.Code
}

func TestWebhookRequests(t *testing.T) {
	const jsonBody = `{"event":"order.created","id":42}`
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	cases := []struct {
		name      string
		config    string
		method    string
		body      string
		header    http.Header
		wantCode  int
		wantAllow string
		wantError string
	}{
		// Methods.
		{"none GET", `{"auth":"none"}`, "GET", "", nil, 202, "", ""},
		{"none POST", `{"auth":"none"}`, "POST", jsonBody, hdr("Content-Type", "application/json"), 202, "", ""},
		{"PUT", `{"auth":"none"}`, "PUT", jsonBody, nil, 405, "GET, POST", "method_not_allowed"},
		{"DELETE", `{"auth":"none"}`, "DELETE", "", nil, 405, "GET, POST", "method_not_allowed"},
		{"PATCH", `{"auth":"none"}`, "PATCH", jsonBody, nil, 405, "GET, POST", "method_not_allowed"},
		{"OPTIONS", `{"auth":"none"}`, "OPTIONS", "", nil, 405, "GET, POST", "method_not_allowed"},

		// Bearer.
		{"bearer right", `{"auth":"bearer"}`, "POST", jsonBody, hdr("Authorization", "Bearer "+testSecret), 202, "", ""},
		{"bearer right GET", `{"auth":"bearer"}`, "GET", "", hdr("Authorization", "bearer "+testSecret), 202, "", ""},
		{"bearer wrong", `{"auth":"bearer"}`, "POST", jsonBody, hdr("Authorization", "Bearer nope"), 401, "", "unauthorized"},
		{"bearer prefix of secret", `{"auth":"bearer"}`, "POST", jsonBody, hdr("Authorization", "Bearer "+testSecret[:5]), 401, "", "unauthorized"},
		{"bearer other scheme", `{"auth":"bearer"}`, "POST", jsonBody, hdr("Authorization", "Basic "+testSecret), 401, "", "unauthorized"},
		{"bearer missing", `{"auth":"bearer"}`, "POST", jsonBody, nil, 401, "", "unauthorized"},

		// Header.
		{"header right", `{"auth":"header","header":"X-Hook-Secret"}`, "POST", jsonBody, hdr("X-Hook-Secret", testSecret), 202, "", ""},
		{"header wrong", `{"auth":"header","header":"X-Hook-Secret"}`, "POST", jsonBody, hdr("X-Hook-Secret", testSecret+"x"), 401, "", "unauthorized"},
		{"header in another header", `{"auth":"header","header":"X-Hook-Secret"}`, "POST", jsonBody, hdr("X-Other", testSecret), 401, "", "unauthorized"},
		{"header missing", `{"auth":"header","header":"X-Hook-Secret"}`, "GET", "", nil, 401, "", "unauthorized"},

		// HMAC over the raw body.
		{"sha256 plain", `{"auth":"hmac-sha256","header":"X-Signature"}`, "POST", jsonBody, hdr("X-Signature", sign(sha256.New, jsonBody)), 202, "", ""},
		{"sha256 prefixed", `{"auth":"hmac-sha256","header":"X-Hub-Signature-256"}`, "POST", jsonBody, hdr("X-Hub-Signature-256", "sha256="+sign(sha256.New, jsonBody)), 202, "", ""},
		{"sha256 upper-case hex", `{"auth":"hmac-sha256","header":"X-Signature"}`, "POST", jsonBody, hdr("X-Signature", strings.ToUpper(sign(sha256.New, jsonBody))), 202, "", ""},
		{"sha256 other body", `{"auth":"hmac-sha256","header":"X-Signature"}`, "POST", jsonBody, hdr("X-Signature", sign(sha256.New, jsonBody+" ")), 401, "", "unauthorized"},
		{"sha256 wrong prefix", `{"auth":"hmac-sha256","header":"X-Signature"}`, "POST", jsonBody, hdr("X-Signature", "sha512="+sign(sha256.New, jsonBody)), 401, "", "unauthorized"},
		{"sha256 not hex", `{"auth":"hmac-sha256","header":"X-Signature"}`, "POST", jsonBody, hdr("X-Signature", testSecret), 401, "", "unauthorized"},
		{"sha256 missing", `{"auth":"hmac-sha256","header":"X-Signature"}`, "POST", jsonBody, nil, 401, "", "unauthorized"},
		{"sha512 plain", `{"auth":"hmac-sha512","header":"X-Signature"}`, "POST", jsonBody, hdr("X-Signature", sign(sha512.New, jsonBody)), 202, "", ""},
		{"sha512 prefixed", `{"auth":"hmac-sha512","header":"X-Signature"}`, "POST", jsonBody, hdr("X-Signature", "sha512="+sign(sha512.New, jsonBody)), 202, "", ""},
		{"sha512 given sha256", `{"auth":"hmac-sha512","header":"X-Signature"}`, "POST", jsonBody, hdr("X-Signature", sign(sha256.New, jsonBody)), 401, "", "unauthorized"},
		{"sha256 empty body", `{"auth":"hmac-sha256","header":"X-Signature"}`, "POST", "", hdr("X-Signature", sign(sha256.New, "")), 202, "", ""},
		{"GET with sha256", `{"auth":"hmac-sha256","header":"X-Signature"}`, "GET", "", hdr("X-Signature", sign(sha256.New, "")), 405, "POST", "method_not_allowed"},
		{"GET with sha512", `{"auth":"hmac-sha512","header":"X-Signature"}`, "GET", "", nil, 405, "POST", "method_not_allowed"},

		// Limits and bodies.
		{"over the limit", `{"auth":"none"}`, "POST", `{"pad":"` + strings.Repeat("x", 200) + `"}`, hdr("Content-Type", "application/json"), 413, "", "too_large"},
		{"at the limit", `{"auth":"none"}`, "POST", `"` + strings.Repeat("x", 126) + `"`, nil, 202, "", ""},
		{"over the limit, signed", `{"auth":"hmac-sha256","header":"X-Signature"}`, "POST", strings.Repeat("x", 129), hdr("X-Signature", sign(sha256.New, strings.Repeat("x", 129))), 413, "", "too_large"},
		{"JSON content type, not JSON", `{"auth":"none"}`, "POST", `{"a":`, hdr("Content-Type", "application/json"), 400, "", "invalid_json"},
		{"too long Idempotency-Key", `{"auth":"none"}`, "POST", jsonBody, hdr("Idempotency-Key", strings.Repeat("k", MaxIdempotencyKey+1)), 400, "", "bad_request"},

		// Publication.
		{"not published", "", "POST", jsonBody, nil, 409, "", "not_published"},
		{"published with a schedule", `{"cron":"* * * * *"}`, "POST", jsonBody, nil, 409, "", "not_published"},
	}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newWebhookFixture(t, d, Options{MaxBody: 128})
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				switch tc.name {
				case "not published":
					f.wfs.set("", "", false)
				case "published with a schedule":
					f.wfs.set(KindSchedule, tc.config, true)
				default:
					f.wfs.set(KindWebhook, tc.config, true)
				}
				before := len(f.starter.Calls())
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
				}
				r := httptest.NewRequest(tc.method, "/webhooks/"+f.token+"?src=test", body)
				for k, vs := range tc.header {
					r.Header[k] = vs
				}
				rec := f.serve(r)
				if rec.Code != tc.wantCode {
					t.Fatalf("status: got %d, want %d (body %s)", rec.Code, tc.wantCode, rec.Body)
				}
				if got := rec.Header().Get("Allow"); got != tc.wantAllow {
					t.Errorf("Allow: got %q, want %q", got, tc.wantAllow)
				}
				calls := f.starter.Calls()[before:]
				if tc.wantCode == 202 {
					if len(calls) != 1 {
						t.Fatalf("StartRun calls: got %d, want 1", len(calls))
					}
					var resp map[string]string
					if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
						t.Fatalf("body %q: %v", rec.Body, err)
					}
					if want := "run-" + strconv.Itoa(before+1); resp["runId"] != want {
						t.Errorf("runId: got %q, want %q", resp["runId"], want)
					}
					if c := calls[0]; c.WorkflowID != f.workflow || c.Source != SourceWebhook {
						t.Errorf("StartRun: got workflow %q source %q, want %q %q", c.WorkflowID, c.Source, f.workflow, SourceWebhook)
					}
					return
				}
				if len(calls) != 0 {
					t.Errorf("StartRun calls: got %d, want 0", len(calls))
				}
				if got := errorCode(t, rec); got != tc.wantError {
					t.Errorf("error code: got %q, want %q", got, tc.wantError)
				}
				if strings.Contains(rec.Body.String(), testSecret) {
					t.Errorf("response carries the secret: %s", rec.Body)
				}
			})
		}
	})
}

func TestWebhookBodyOverLimitWithoutLength(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newWebhookFixture(t, d, Options{MaxBody: 64})
		r := httptest.NewRequest("POST", "/webhooks/"+f.token, io.NopCloser(strings.NewReader(strings.Repeat("y", 65))))
		r.ContentLength = -1 // chunked: the limit applies while reading
		rec := f.serve(r)
		if rec.Code != 413 {
			t.Fatalf("status: got %d, want 413", rec.Code)
		}
		if n := len(f.starter.Calls()); n != 0 {
			t.Errorf("StartRun calls: got %d, want 0", n)
		}
	})
}

func TestWebhookDefaultLimitIsOneMiB(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newWebhookFixture(t, d, Options{})
		for _, c := range []struct {
			size int
			want int
		}{{DefaultMaxBody, 202}, {DefaultMaxBody + 1, 413}} {
			r := httptest.NewRequest("POST", "/webhooks/"+f.token, strings.NewReader(strings.Repeat("z", c.size)))
			r.Header.Set("Content-Type", "text/plain")
			if rec := f.serve(r); rec.Code != c.want {
				t.Errorf("%d bytes: got %d, want %d", c.size, rec.Code, c.want)
			}
		}
	})
}

func TestWebhookUnknownToken(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newWebhookFixture(t, d, Options{})
		for _, token := range []string{uuid.NewString(), "not-a-token", strings.ToUpper(f.token), f.workflow} {
			rec := f.serve(httptest.NewRequest("POST", "/webhooks/"+token, strings.NewReader("{}")))
			if rec.Code != 404 {
				t.Errorf("token %q: got %d, want 404", token, rec.Code)
			}
			if got := errorCode(t, rec); got != "not_found" {
				t.Errorf("token %q: code %q, want not_found", token, got)
			}
		}
		if n := len(f.starter.Calls()); n != 0 {
			t.Errorf("StartRun calls: got %d, want 0", n)
		}
	})
}

func TestWebhookEndpointAndRegenerate(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := newWebhookFixture(t, d, Options{})
		u, err := uuid.Parse(f.token)
		if err != nil || u.Version() != 4 || u.String() != f.token {
			t.Fatalf("token %q: want a canonical UUID v4 (%v)", f.token, err)
		}
		again, err := f.svc.Endpoint(ctx, f.workflow)
		if err != nil || again != f.token {
			t.Fatalf("Endpoint again: got %q, %v; want %q", again, err, f.token)
		}
		newTok, err := f.svc.Regenerate(ctx, f.workflow)
		if err != nil {
			t.Fatalf("Regenerate: %v", err)
		}
		if newTok == f.token {
			t.Fatalf("Regenerate returned the old token")
		}
		if got, _ := f.svc.Endpoint(ctx, f.workflow); got != newTok {
			t.Errorf("Endpoint after Regenerate: got %q, want %q", got, newTok)
		}
		if rec := f.serve(httptest.NewRequest("POST", "/webhooks/"+f.token, strings.NewReader("{}"))); rec.Code != 404 {
			t.Errorf("old token: got %d, want 404", rec.Code)
		}
		if rec := f.serve(httptest.NewRequest("POST", "/webhooks/"+newTok, strings.NewReader("{}"))); rec.Code != 202 {
			t.Errorf("new token: got %d, want 202 (%s)", rec.Code, rec.Body)
		}
		// The secret survives regeneration.
		if set, err := f.svc.HasSecret(ctx, f.workflow); err != nil || !set {
			t.Errorf("HasSecret after Regenerate: got %v, %v; want true", set, err)
		}

		if _, err := f.svc.Endpoint(ctx, "no-such-workflow"); !apperr.IsNotFound(err) {
			t.Errorf("Endpoint of a missing workflow: got %v, want not found", err)
		}
		if _, err := f.svc.Regenerate(ctx, "no-such-workflow"); !apperr.IsNotFound(err) {
			t.Errorf("Regenerate of a missing workflow: got %v, want not found", err)
		}
		if err := f.svc.SetSecret(ctx, f.workflow, "  "); !apperr.Is(err, apperr.KindInvalid) {
			t.Errorf("SetSecret blank: got %v, want invalid", err)
		}
		other := newWorkflow(t, d)
		if set, err := f.svc.HasSecret(ctx, other); err != nil || set {
			t.Errorf("HasSecret without endpoint: got %v, %v; want false", set, err)
		}
		// Deleting the workflow removes its endpoint.
		if _, err := d.Write().ExecContext(ctx, `DELETE FROM workflows WHERE id = $1`, f.workflow); err != nil {
			t.Fatal(err)
		}
		if rec := f.serve(httptest.NewRequest("POST", "/webhooks/"+newTok, strings.NewReader("{}"))); rec.Code != 404 {
			t.Errorf("token of a deleted workflow: got %d, want 404", rec.Code)
		}
	})
}

// ordered fails the test if the handler writes its status before the
// starter has returned.
type ordered struct {
	http.ResponseWriter
	t       *testing.T
	starter *fakeStarter
	status  int
}

func (o *ordered) WriteHeader(code int) {
	if code/100 == 2 && o.starter.Returned() == 0 {
		o.t.Errorf("wrote %d before StartRun returned", code)
	}
	o.status = code
	o.ResponseWriter.WriteHeader(code)
}

func TestWebhookAcceptsOnlyAfterTheRunIsRecorded(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newWebhookFixture(t, d, Options{})
		f.starter.delay = 20 * time.Millisecond // the handler must wait for it
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/webhooks/"+f.token, strings.NewReader(`{"a":1}`))
		r.SetPathValue("token", f.token)
		f.svc.ServeHTTP(&ordered{ResponseWriter: rec, t: t, starter: f.starter}, r)
		if rec.Code != 202 || strings.TrimSpace(rec.Body.String()) != `{"runId":"run-1"}` {
			t.Fatalf("got %d %s, want 202 {\"runId\":\"run-1\"}", rec.Code, rec.Body)
		}
	})
}

func TestWebhookStarterFailure(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		wantCode int
		wantErr  string
		wantLogs int
	}{
		{"database down", errDown, 503, "unavailable", 1},
		{"engine says not published", apperr.Conflict("not_published", "", "not published"), 409, "not_published", 0},
	}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				f := newWebhookFixture(t, d, Options{})
				f.wfs.set(KindWebhook, `{"auth":"bearer"}`, true)
				f.starter.err = tc.err
				r := httptest.NewRequest("POST", "/webhooks/"+f.token, strings.NewReader(`{}`))
				r.Header.Set("Authorization", "Bearer "+testSecret)
				rec := f.serve(r)
				if rec.Code != tc.wantCode {
					t.Fatalf("status: got %d, want %d", rec.Code, tc.wantCode)
				}
				if got := errorCode(t, rec); got != tc.wantErr {
					t.Errorf("code: got %q, want %q", got, tc.wantErr)
				}
				if n := len(f.starter.Calls()); n != 1 {
					t.Errorf("StartRun calls: got %d, want 1", n)
				}
				logs := f.log.String()
				if n := strings.Count(logs, "level=ERROR"); n != tc.wantLogs {
					t.Errorf("error log lines: got %d, want %d:\n%s", n, tc.wantLogs, logs)
				}
				if tc.wantLogs > 0 && !strings.Contains(logs, f.workflow) {
					t.Errorf("log does not name the workflow:\n%s", logs)
				}
				if strings.Contains(rec.Body.String(), errDown.Error()) {
					t.Errorf("response leaks the internal error: %s", rec.Body)
				}
			})
		}
		t.Run("trigger lookup fails", func(t *testing.T) {
			f := newWebhookFixture(t, d, Options{})
			f.wfs.err = errDown
			rec := f.serve(httptest.NewRequest("POST", "/webhooks/"+f.token, strings.NewReader(`{}`)))
			if rec.Code != 503 {
				t.Fatalf("status: got %d, want 503", rec.Code)
			}
			if n := len(f.starter.Calls()); n != 0 {
				t.Errorf("StartRun calls: got %d, want 0", n)
			}
		})
	})
}

func TestWebhookIdempotencyKey(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newWebhookFixture(t, d, Options{})
		var ids []string
		for _, key := range []string{"delivery-77", "delivery-77", ""} {
			r := httptest.NewRequest("POST", "/webhooks/"+f.token, strings.NewReader(`{}`))
			if key != "" {
				r.Header.Set("Idempotency-Key", key)
			}
			rec := f.serve(r)
			if rec.Code != 202 {
				t.Fatalf("status: got %d, want 202", rec.Code)
			}
			var resp map[string]string
			_ = json.Unmarshal(rec.Body.Bytes(), &resp)
			ids = append(ids, resp["runId"])
		}
		calls := f.starter.Calls()
		for i, want := range []string{"delivery-77", "delivery-77", ""} {
			if calls[i].DedupKey != want {
				t.Errorf("call %d dedupKey: got %q, want %q", i, calls[i].DedupKey, want)
			}
		}
		if ids[0] != ids[1] || ids[0] == ids[2] {
			t.Errorf("run ids: got %v, want the first two equal and the third new", ids)
		}
	})
}

func TestWebhookPayload(t *testing.T) {
	cases := []struct {
		name        string
		config      string
		method      string
		target      string
		contentType string
		body        string
		header      map[string]string
		want        string // the payload minus "headers"
		wantHeaders map[string]string
		dropped     []string
	}{
		{
			name: "GET query", config: `{"auth":"none"}`, method: "GET", target: "?page=2&tag=a&tag=b",
			want: `{"method":"GET","query":{"page":"2","tag":["a","b"]}}`,
		},
		{
			name: "POST JSON as is", config: `{"auth":"none"}`, method: "POST", contentType: "application/json",
			body: `{"n": 12345678901234567890, "list": [1, "<b>"]}`,
			want: `{"method":"POST","query":{},"contentType":"application/json","body":{"n":12345678901234567890,"list":[1,"<b>"]}}`,
		},
		{
			name: "POST JSON array, no content type", config: `{"auth":"none"}`, method: "POST",
			body: `[1,2]`,
			want: `{"method":"POST","query":{},"body":[1,2]}`,
		},
		{
			name: "POST vendor JSON", config: `{"auth":"none"}`, method: "POST", contentType: "application/vnd.api+json; charset=utf-8",
			body: `{"data":null}`,
			want: `{"method":"POST","query":{},"contentType":"application/vnd.api+json; charset=utf-8","body":{"data":null}}`,
		},
		{
			name: "POST text", config: `{"auth":"none"}`, method: "POST", contentType: "text/plain", target: "?x=1",
			body: "hello, {world",
			want: `{"method":"POST","query":{"x":"1"},"contentType":"text/plain","body":"hello, {world"}`,
		},
		{
			name: "POST form", config: `{"auth":"none"}`, method: "POST", contentType: "application/x-www-form-urlencoded",
			body: "a=1&b=two+words&b=3",
			want: `{"method":"POST","query":{},"contentType":"application/x-www-form-urlencoded","body":{"a":"1","b":["two words","3"]}}`,
		},
		{
			name: "POST binary", config: `{"auth":"none"}`, method: "POST", contentType: "application/octet-stream",
			body: "\xff\xfe\x00\x01",
			want: `{"method":"POST","query":{},"contentType":"application/octet-stream","body":"//4AAQ==","bodyEncoding":"base64"}`,
		},
		{
			name: "POST empty", config: `{"auth":"none"}`, method: "POST",
			want: `{"method":"POST","query":{},"body":null}`,
		},
		{
			name: "header secret left out", config: `{"auth":"header","header":"X-Token"}`, method: "POST", contentType: "application/json",
			body:        `{}`,
			header:      map[string]string{"X-Token": testSecret, "Cookie": "sid=1", "X-Event": "push", "Proxy-Authorization": "Basic eA=="},
			want:        `{"method":"POST","query":{},"contentType":"application/json","body":{}}`,
			wantHeaders: map[string]string{"x-event": "push", "content-type": "application/json"},
			dropped:     []string{"x-token", "cookie", "proxy-authorization", "authorization"},
		},
		{
			name: "bearer left out", config: `{"auth":"bearer"}`, method: "GET",
			header:      map[string]string{"Authorization": "Bearer " + testSecret, "User-Agent": "hooks/1.0"},
			want:        `{"method":"GET","query":{}}`,
			wantHeaders: map[string]string{"user-agent": "hooks/1.0"},
			dropped:     []string{"authorization"},
		},
		{
			name: "signature left out", config: `{"auth":"hmac-sha256","header":"X-Sig"}`, method: "POST", contentType: "application/json",
			body:        `{"ok":true}`,
			header:      map[string]string{"X-Sig": sign(sha256.New, `{"ok":true}`)},
			want:        `{"method":"POST","query":{},"contentType":"application/json","body":{"ok":true}}`,
			wantHeaders: map[string]string{"content-type": "application/json"},
			dropped:     []string{"x-sig"},
		},
	}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newWebhookFixture(t, d, Options{})
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				f.wfs.set(KindWebhook, tc.config, true)
				before := len(f.starter.Calls())
				r := httptest.NewRequest(tc.method, "/webhooks/"+f.token+tc.target, strings.NewReader(tc.body))
				if tc.contentType != "" {
					r.Header.Set("Content-Type", tc.contentType)
				}
				for k, v := range tc.header {
					r.Header.Set(k, v)
				}
				if rec := f.serve(r); rec.Code != 202 {
					t.Fatalf("status: got %d, want 202 (%s)", rec.Code, rec.Body)
				}
				payload := f.starter.Calls()[before].Payload
				var got map[string]json.RawMessage
				if err := json.Unmarshal(payload, &got); err != nil {
					t.Fatalf("payload %s: %v", payload, err)
				}
				var headers map[string]string
				if err := json.Unmarshal(got["headers"], &headers); err != nil {
					t.Fatalf("headers %s: %v", got["headers"], err)
				}
				delete(got, "headers")
				rest, _ := json.Marshal(got)
				if !jsonEqual(t, rest, []byte(tc.want)) {
					t.Errorf("payload:\n got %s\nwant %s", rest, tc.want)
				}
				for k, v := range tc.wantHeaders {
					if headers[k] != v {
						t.Errorf("headers[%q]: got %q, want %q", k, headers[k], v)
					}
				}
				for _, k := range tc.dropped {
					if _, ok := headers[k]; ok {
						t.Errorf("headers carry %q", k)
					}
				}
				if strings.Contains(string(payload), testSecret) {
					t.Errorf("payload carries the secret: %s", payload)
				}
			})
		}
	})
}

// jsonEqual compares two JSON documents by value, keeping big numbers exact.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	norm := func(x []byte) string {
		var v any
		dec := json.NewDecoder(strings.NewReader(string(x)))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("decode %s: %v", x, err)
		}
		out, _ := json.Marshal(v)
		return string(out)
	}
	return norm(a) == norm(b)
}

// TestWebhookSecretNeverLeaks drives every path that touches the secret and
// checks responses, logs, run payloads and the stored row.
func TestWebhookSecretNeverLeaks(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newWebhookFixture(t, d, Options{MaxBody: 256})
		body := `{"x":1}`
		type req struct {
			config string
			method string
			header [2]string
			fail   error
		}
		reqs := []req{
			{`{"auth":"bearer"}`, "POST", [2]string{"Authorization", "Bearer " + testSecret}, nil},
			{`{"auth":"bearer"}`, "POST", [2]string{"Authorization", "Bearer wrong"}, nil},
			{`{"auth":"header","header":"X-Key"}`, "POST", [2]string{"X-Key", testSecret}, nil},
			{`{"auth":"header","header":"X-Key"}`, "GET", [2]string{"X-Key", "wrong"}, nil},
			{`{"auth":"hmac-sha256","header":"X-Sig"}`, "POST", [2]string{"X-Sig", sign(sha256.New, body)}, nil},
			{`{"auth":"hmac-sha512","header":"X-Sig"}`, "POST", [2]string{"X-Sig", testSecret}, nil},
			{`{"auth":"hmac-sha512","header":"X-Sig"}`, "GET", [2]string{"X-Sig", testSecret}, nil},
			{`{"auth":"bearer"}`, "POST", [2]string{"Authorization", "Bearer " + testSecret}, errDown},
			{`{"auth":"bogus"}`, "POST", [2]string{"Authorization", "Bearer " + testSecret}, nil},
		}
		for _, rq := range reqs {
			f.wfs.set(KindWebhook, rq.config, true)
			f.starter.mu.Lock()
			f.starter.err = rq.fail
			f.starter.mu.Unlock()
			r := httptest.NewRequest(rq.method, "/webhooks/"+f.token, strings.NewReader(body))
			r.Header.Set(rq.header[0], rq.header[1])
			rec := f.serve(r)
			if strings.Contains(rec.Body.String(), testSecret) {
				t.Errorf("%s %s: response carries the secret: %s", rq.config, rq.method, rec.Body)
			}
			for k, vs := range rec.Header() {
				if strings.Contains(strings.Join(vs, ","), testSecret) {
					t.Errorf("response header %s carries the secret", k)
				}
			}
		}
		if logs := f.log.String(); strings.Contains(logs, testSecret) || logs == "" {
			t.Errorf("log (want some lines, none with the secret):\n%s", logs)
		}
		for _, c := range f.starter.Calls() {
			if strings.Contains(string(c.Payload), testSecret) {
				t.Errorf("run payload carries the secret: %s", c.Payload)
			}
		}
		var stored []byte
		if err := d.Read().QueryRowContext(context.Background(), `SELECT c.ciphertext FROM webhook_endpoints e JOIN credentials c ON c.handle = e.secret_handle WHERE e.workflow_id = $1`, f.workflow).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if len(stored) == 0 || strings.Contains(string(stored), testSecret) {
			t.Errorf("stored secret is not sealed: %q", stored)
		}
	})
}

func TestWebhookAuthModeWithoutSecretFailsClosed(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := newWebhookFixture(t, d, Options{})
		other := newWorkflow(t, d)
		token, err := f.svc.Endpoint(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		for _, cfg := range []string{`{"auth":"bearer"}`, `{"auth":"header","header":"X-K"}`, `{"auth":"hmac-sha256","header":"X-K"}`} {
			f.wfs.set(KindWebhook, cfg, true)
			r := httptest.NewRequest("POST", "/webhooks/"+token, strings.NewReader(""))
			r.Header.Set("Authorization", "Bearer ")
			r.Header.Set("X-K", sign(sha256.New, ""))
			if rec := f.serve(r); rec.Code != 401 {
				t.Errorf("%s without a secret: got %d, want 401", cfg, rec.Code)
			}
		}
		if n := len(f.starter.Calls()); n != 0 {
			t.Errorf("StartRun calls: got %d, want 0", n)
		}
	})
}
