// Package sandbox is "Sandbox Chat": a third-party app that TaskJuice can
// connect to like any real one, but that runs inside our own process (or
// standalone with "taskjuice sandbox serve"). It is a real OAuth 2.0
// authorization server, a small chat API protected by its tokens, and admin
// controls to break it on purpose so the demo and the tests can show what
// the product does when a provider misbehaves.
//
// Every path below is relative to the handler's root, so the handler can be
// served at "/" or mounted under a prefix with http.StripPrefix.
//
// # OAuth 2.0 (RFC 6749, PKCE RFC 7636, revocation RFC 7009)
//
//	GET  /oauth/authorize   consent page; needs client_id, a registered
//	                        redirect_uri, response_type=code, state, scope and
//	                        code_challenge with code_challenge_method=S256.
//	                        A bad request shows an error page and never
//	                        redirects.
//	POST /oauth/authorize   the consent form (fields: request, account,
//	                        decision=allow|deny); redirects to the client
//	                        with code and state, or error=access_denied.
//	POST /oauth/token       grant_type=authorization_code (code_verifier
//	                        required) or refresh_token. Refresh tokens rotate:
//	                        each refresh returns a new one and the old one
//	                        answers invalid_grant. Clients authenticate with
//	                        client_secret_basic or client_secret_post; public
//	                        clients (no secret) rely on PKCE.
//	POST /oauth/revoke      revokes the token's whole grant.
//	GET  /.well-known/oauth-authorization-server   metadata (RFC 8414).
//
// Scopes: channels:read, chat:write, messages:read. A grant is one
// authorization (client + sandbox account + scopes); every token minted from
// it belongs to it, and revoking it kills them all.
//
// # Chat API (Authorization: Bearer ACCESS_TOKEN)
//
//	GET  /api/me                              {"account":{"id","name"}}
//	GET  /api/channels                        channels:read
//	GET  /api/channels/{channel}/messages     messages:read
//	POST /api/channels/{channel}/messages     chat:write, body {"text":"..."};
//	                                          an Idempotency-Key header makes
//	                                          a retried post return the first
//	                                          message instead of a second one.
//
// {channel} is a channel's id or name. A missing, unknown, expired or
// revoked token answers 401 {"error":"invalid_token"} with
// WWW-Authenticate: Bearer error="invalid_token"; a missing scope answers
// 403 {"error":"insufficient_scope"}.
//
// # Admin API (Authorization: Bearer ADMIN_TOKEN; disabled without one)
//
//	GET  /admin/grants      {"grants":[{id, account, client_id, scopes, created, revoked}]}
//	POST /admin/revoke      {"grant_id":"..."} or {"account":"Sandbox Workspace"}
//	                        -> {"revoked": N}
//	POST /admin/fail        {"count":3, "kind":"500"|"429"|"timeout",
//	                        "retry_after_seconds":5}: the next N token-endpoint
//	                        requests fail. 429 carries Retry-After; timeout
//	                        holds the request until the client gives up (or
//	                        Options.TimeoutHold passes, then 504). Count 0
//	                        clears pending failures. Answers with the stats.
//	GET  /admin/lifetimes   the lifetimes in force
//	POST /admin/lifetimes   {"access_ttl":"30s", "refresh_ttl":"720h"} (Go
//	                        durations; omitted = unchanged) -> current lifetimes
//	GET  /admin/stats       token requests by grant type, refreshes per grant,
//	                        failures injected, messages posted.
//
// The same controls exist as Provider methods for tests in this process,
// and as AdminClient for a sandbox running elsewhere.
package sandbox
