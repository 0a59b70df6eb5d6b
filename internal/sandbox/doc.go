// Package sandbox is "Sandbox Chat": a third-party app that TaskJuice can
// connect to like any real one, but that runs inside our own process (or
// standalone with "taskjuice sandbox serve"). It is a real OAuth 2.0
// authorization server, a small chat API protected by its tokens, a
// scripted model endpoint speaking OpenAI's chat-completions protocol, and
// admin controls to break it on purpose so the demo and the tests can show
// what the product does when a provider misbehaves.
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
//	GET  /api/channels/{channel}/messages     messages:read; ?limit=1..1000
//	                                          (default 100). Without
//	                                          ?after: the last limit
//	                                          messages, oldest first. With
//	                                          ?after=MESSAGE_ID (empty: from
//	                                          the channel's start): up to
//	                                          limit messages posted after it,
//	                                          in order, with "has_more" and
//	                                          "next_cursor" (the last id
//	                                          answered, to pass as after
//	                                          next); an unknown id answers
//	                                          400 invalid_cursor.
//	POST /api/channels/{channel}/messages     chat:write, body {"text":"..."};
//	                                          an Idempotency-Key header makes
//	                                          a retried post return the first
//	                                          message instead of a second one.
//	POST /api/webhooks                        messages:read, body {"url":"https://…",
//	                                          "channel":"general"} (channel
//	                                          optional: every channel) -> 201
//	                                          {"webhook":{id,url,channel,created},
//	                                          "secret":"whsec_…"}; the secret
//	                                          is shown only here.
//	GET  /api/webhooks                        this client's subscriptions in
//	                                          this account (no secrets)
//	DELETE /api/webhooks/{id}                 204; pending deliveries dropped
//
// Every message posted in a subscribed channel (through the API, by
// Provider.Post, or by /admin/emit) is POSTed to the subscription's URL as
// {"id":"evt_…","type":"message.created","created":UNIX,"data":{"channel":
// {…},"message":{…}}} with the headers Sandbox-Event-Id (the event id) and
// Sandbox-Signature: t=UNIX,v1=HEX, HEX being the HMAC-SHA256 of
// "UNIX.BODY" under the secret (Sign). A delivery not answered 2xx is
// retried after Options.DeliveryBackoff, doubling each time, 8 attempts in
// all; a subscription's deliveries keep their order (a later one waits
// behind a failed one). Deliveries go on while the subscriber's grant is
// revoked, as pushed events do at real apps. Waiting deliveries are kept in
// memory only.
//
// {channel} is a channel's id or name. A missing, unknown, expired or
// revoked token answers 401 {"error":"invalid_token"} with
// WWW-Authenticate: Bearer error="invalid_token"; a missing scope answers
// 403 {"error":"insufficient_scope"}.
//
// # Model API (Authorization: Bearer MODEL_KEY)
//
// An OpenAI-compatible chat-completions endpoint, so that agents run with
// no outside service. MODEL_KEY is Options.ModelKey, or a random key that
// Provider.ModelKey returns.
//
//	GET  /v1/models                 {"object":"list","data":[{id,object,created,owned_by}]}
//	GET  /v1/models/{model}         one model, or 404 model_not_found
//	POST /v1/chat/completions       model, messages, tools, tool_choice,
//	                                max_tokens, max_completion_tokens,
//	                                response_format; other fields
//	                                (temperature, user, ...) are ignored.
//
// Models: sandbox-small (16,384 prompt tokens, 4,096 completion tokens)
// and sandbox-large (131,072 and 16,384); they answer alike.
//
// Requests are validated like OpenAI does: roles system, developer, user,
// assistant and tool; content a string, text parts or (for an assistant
// calling tools) null; every assistant tool call answered by a tool
// message with its tool_call_id before the next other message, and no
// tool message without one; function tools with unique names; tool_choice
// none, auto, required or a named tool, only with tools; max tokens from 1
// to the model's limit (with both fields, the smaller wins); stream and
// n > 1 unsupported. Errors use OpenAI's shape,
// {"error":{"message","type","param","code"}}: 401 invalid_api_key, 400
// invalid_request_error (code invalid_json, missing_required_parameter,
// invalid_type, invalid_value, unsupported_value or
// context_length_exceeded), 404 model_not_found.
//
// Answers are chat.completion objects with one choice. Tokens are counted
// as one per four characters, rounded up, at least one: the prompt is the
// compacted JSON of messages and tools, the completion the content plus
// each call's name and arguments. A reply longer than max_tokens is cut
// (tool arguments too, leaving broken JSON as a real model would) and
// finishes "length"; otherwise "tool_calls" or "stop".
//
// Replies are scripted and deterministic. Provider.ScriptModel (or POST
// /admin/model/script) queues replies, each text, tool calls or both;
// every valid request takes the next one, served as written. With no
// script queued the default policy answers:
//
//   - Call a tool when tool_choice names one; when it is "required", call
//     the first tool that mentions posting (post, message, send, notify or
//     chat in its name, else its description), or the first tool; when it
//     is "auto", call that posting tool if the last user message or the
//     instructions (system and developer messages, a standing order such
//     as "When a lead comes in, post it") ask to post or tell something
//     (post, send, tell, say, announce, notify, inform, share, remind,
//     message, ping, publish, or "let ... know") and no tool result has
//     come since that message.
//   - The call's arguments fill the tool's parameters schema (see below),
//     with channel-like properties (channel, channel_id, room, ...) set to
//     the first #channel of the user message, else of the instructions,
//     else "general", and text-like ones (text, message, content, body,
//     summary, ...) set to, for a message that is a JSON object (alone or
//     after a "Label:" line), its fields ("key: value; ...", or a lone
//     field's value), else the message's first quoted text, else what
//     follows its first colon, else the whole message, in at most 280
//     characters. A tool without
//     parameters gets {"channel","text"}, Sandbox Chat's post shape.
//   - Otherwise answer with text: "Done. NAME returned RESULT." for the
//     tool results since the last user message (each result cut to 160
//     characters), else This is MODEL, the sandbox's scripted model. You
//     said: "MESSAGE" (cut to 160 characters). With response_format
//     json_object the text comes as {"answer": TEXT}; with json_schema as
//     a value fitting the schema, text-like properties holding the text.
//
// Values fitting a schema: const, else the first enum value; the first
// non-null branch of anyOf, oneOf or allOf; local $refs followed; objects
// with their required properties (all of them if none is listed as
// required); arrays with minItems items (one if unset); strings by format
// (date-time, date, email, uri, uuid) or "example", padded to minLength
// and cut to maxLength; numbers at their minimum (or 0); booleans false.
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
//	                        failures injected, messages posted, and under
//	                        "model": requests (every chat-completion request
//	                        past the key check), completions, scripted,
//	                        prompt_tokens, completion_tokens, rejected,
//	                        unauthorized, failures_injected,
//	                        failures_pending, script_pending.
//	POST /admin/emit        {"account":"Acme Chat","channel":"general",
//	                        "text":"Lead","count":50}: posts "Lead 1" … "Lead 50"
//	                        as people in the chat -> {"messages":[…]}
//	POST /admin/deliveries/fail  {"count":2}: the next N webhook delivery
//	                        attempts fail without being sent, and are retried.
//	                        Answers with the stats (deliveries_sent,
//	                        deliveries_failed, deliveries_pending).
//	POST /admin/model/script  {"replies":[{"content":"..."} or
//	                        {"tool_calls":[{"name":"...","arguments":{...}}]}]}
//	                        (arguments a JSON value or a string, sent as
//	                        is) appends to the script -> {"pending": N}
//	DELETE /admin/model/script  drops the script -> {"pending":0,"cleared":N}
//	POST /admin/model/fail  like /admin/fail, for the next N
//	                        chat-completion requests past the key check:
//	                        500 server_error, 429 rate_limit_exceeded with
//	                        Retry-After (at least 1), or timeout then 504.
//	                        Failures come before validation and leave the
//	                        script alone.
//
// Provider.Post adds a message to an account's channel as a person in the
// chat would (what makes "New message in channel" fire in tests and demos).
//
// The same controls exist as Provider methods for tests in this process,
// and as AdminClient for a sandbox running elsewhere.
package sandbox
