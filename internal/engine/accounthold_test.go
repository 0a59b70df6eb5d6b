package engine_test

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"taskjuice/internal/apperr"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/workflow"
)

// consentAs reconnects the fixture's connection through the real consent
// flow (BeginConsent, the sandbox's consent page, CompleteConsent), as the
// sandbox account named.
func (f *fixture) consentAs(accountName string) connection.ConsentResult {
	f.t.Helper()
	var owner string
	must(f.t, f.d.Read().QueryRowContext(f.ctx, `SELECT id FROM users WHERE email = 'o@a.example'`).Scan(&owner))
	app, _ := f.cat.App("sandbox-chat")
	cfg, err := connection.OAuthConfig(app, "http://127.0.0.1/callback")
	must(f.t, err)
	authURL, _, err := f.conns.BeginConsent(f.ctx, cfg, connection.ConsentRequest{Workspace: f.ws, ReconnectID: f.connID,
		Actor: connection.Actor{Kind: connection.ActorUser, UserID: owner}, SessionBinding: "session", OwnerKind: connection.OwnerWorkspace})
	must(f.t, err)
	cb, err := sandbox.Consent(f.ctx, nil, authURL, accountName, true)
	must(f.t, err)
	res, err := f.conns.CompleteConsent(f.ctx, cb.Query(), "session",
		func(connection.Connection) (*oauth2.Config, error) { return cfg, nil },
		func(ctx context.Context, _ connection.Connection, tok *oauth2.Token) (connection.ExternalAccount, error) {
			return connection.Identify(ctx, nil, app, tok)
		})
	must(f.t, err)
	return res
}

// A reconnect as another account keeps the connection's held runs held —
// agent runs and auto-resume workflows included, and bulk and single
// Resume refuse — until a person releases them or the connection is
// reconnected with the original account; a same-account reconnect lets
// them go on at once.
func TestReconnectAsAnotherAccount(t *testing.T) {
	for _, mode := range []string{"same account", "released", "original account again"} {
		t.Run(strings.ReplaceAll(mode, " ", "-"), func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, d *db.DB) {
				f := setup(t, d)
				// The connection was made with Acme Chat.
				if res := f.consentAs("Acme Chat"); res.AccountChanged {
					t.Fatal("first consent reported an account change")
				}
				plain := f.publish([]workflow.Node{f.bound(post("Hello"))})
				auto := f.publish([]workflow.Node{f.bound(post("Hello again"))})
				_, err := d.Write().ExecContext(f.ctx, `UPDATE workflows SET auto_resume_reauth = TRUE WHERE id = $1`, auto)
				must(t, err)
				agent := f.publishAgent()
				agentRun, err := f.eng.StartRun(f.ctx, agent, nil, "api", "")
				must(t, err)
				f.drain()

				_, err = f.sb.RevokeAccount("Acme Chat")
				must(t, err)
				f.decide(agentRun, postCall("after the break"))
				plainRun, err := f.eng.StartRun(f.ctx, plain, nil, "manual", "")
				must(t, err)
				autoRun, err := f.eng.StartRun(f.ctx, auto, nil, "manual", "")
				must(t, err)
				f.drain()
				for _, id := range []string{agentRun, plainRun, autoRun} {
					if r := f.run(id); r.Status != engine.StatusPaused || r.PauseReason != engine.PauseReauth {
						t.Fatalf("run %s after the revoke: %s (%s), want paused for reauth", id, r.Status, r.PauseReason)
					}
				}
				status := func(ctx context.Context, id string) (string, error) {
					c, err := f.conns.Get(ctx, f.ws, id)
					return string(c.Status), err
				}

				if mode != "same account" {
					res := f.consentAs("Other Team")
					if !res.AccountChanged || res.Previous.Name != "Acme Chat" {
						t.Fatalf("reconnect as Other Team: changed %v from %q, want changed from Acme Chat", res.AccountChanged, res.Previous.Name)
					}
					n, err := f.eng.ConsumeReauthorizations(f.ctx)
					must(t, err)
					if n != 0 {
						t.Fatalf("after a reconnect as another account: %d runs resumed, want 0", n)
					}
					f.drain()
					for _, id := range []string{agentRun, plainRun, autoRun} {
						if r := f.run(id); r.Status != engine.StatusPaused {
							t.Fatalf("run %s: %s, want kept paused", id, r.Status)
						}
					}
					if n, err := f.eng.HeldOn(f.ctx, f.ws.ID, f.connID); err != nil || n != 3 {
						t.Fatalf("held on the connection: %d (%v), want 3", n, err)
					}
					_, err = f.eng.ResumeHeld(f.ctx, f.ws.ID, f.connID, "", status)
					if e, ok := apperr.As(err); !ok || apperr.Status(err) != 409 || e.Message != engine.MsgKeptHeld {
						t.Fatalf("resume all while kept held: %v, want 409 %q", err, engine.MsgKeptHeld)
					}
					err = f.eng.Resume(f.ctx, f.ws.ID, plainRun, "", status)
					if apperr.Status(err) != 409 {
						t.Fatalf("resume one while kept held: %v, want 409", err)
					}
					why, err := f.eng.KeptHeld(f.ctx, f.run(agentRun))
					must(t, err)
					if !strings.Contains(why, "“Other Team” instead of “Acme Chat”") {
						t.Fatalf("why the run is still held: %q", why)
					}
					if got := f.sb.Stats().MessagesPosted; got != 0 {
						t.Fatalf("messages posted while kept held: %d, want 0", got)
					}
					if mode == "released" {
						must(t, f.conns.ReleaseAccountHold(f.ctx, f.ws, f.connID, connection.System))
						if err := f.conns.ReleaseAccountHold(f.ctx, f.ws, f.connID, connection.System); apperr.Status(err) != 409 {
							t.Fatalf("second release: %v, want 409", err)
						}
					} else if res := f.consentAs("Acme Chat"); res.AccountChanged {
						t.Fatal("reconnecting with the original account reported an account change")
					}
				} else if res := f.consentAs("Acme Chat"); res.AccountChanged {
					t.Fatal("a same-account reconnect reported an account change")
				}

				// Now as after any same-account reconnect: the agent run and
				// the auto-resume run go on by themselves, the other waits for
				// Resume.
				n, err := f.eng.ConsumeReauthorizations(f.ctx)
				must(t, err)
				if n != 2 {
					t.Fatalf("resumed %d runs, want 2 (the agent run and the auto-resume run)", n)
				}
				if why, _ := f.eng.KeptHeld(f.ctx, f.run(plainRun)); why != "" {
					t.Fatalf("still says kept held: %q", why)
				}
				f.drain()
				f.wantWaitingForAgent(agentRun)
				if r := f.run(autoRun); r.Status != engine.StatusCompleted {
					t.Fatalf("auto-resume run: %s, want completed", r.Status)
				}
				if r := f.run(plainRun); r.Status != engine.StatusPaused {
					t.Fatalf("plain run: %s, want paused until Resume", r.Status)
				}
				must(t, f.eng.Resume(f.ctx, f.ws.ID, plainRun, "", status))
				f.drain()
				if r := f.run(plainRun); r.Status != engine.StatusCompleted {
					t.Fatalf("plain run after Resume: %s, want completed", r.Status)
				}
				if got := f.sb.Stats().MessagesPosted; got != 3 {
					t.Fatalf("messages posted: %d, want 3 (the agent's held call and both runs)", got)
				}
			})
		})
	}
}
