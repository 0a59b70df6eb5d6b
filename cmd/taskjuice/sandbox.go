package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/server"
)

const sandboxUsage = `Sandbox Chat: a local OAuth 2.0 provider and chat app to connect to.

Usage:
  taskjuice sandbox serve      run the sandbox on its own
  taskjuice sandbox grants     list the grants of a running sandbox
  taskjuice sandbox revoke     revoke a grant, or every grant of an account
  taskjuice sandbox fail       make the next token requests fail
  taskjuice sandbox lifetimes  change token lifetimes
  taskjuice sandbox stats      show token, message and delivery counters
  taskjuice sandbox emit       post N messages to a channel, as people in the chat
  taskjuice sandbox fail-deliveries
                               make the next N webhook deliveries fail

The admin commands talk to a running sandbox: --url (TASKJUICE_SANDBOX_URL)
and --admin-token (TASKJUICE_SANDBOX_ADMIN_TOKEN).
Run "taskjuice sandbox COMMAND -h" for a command's flags.
`

func cmdSandbox(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, sandboxUsage)
		return errors.New("sandbox: name a command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return sandboxServe(ctx, args, e)
	case "grants":
		return sandboxGrants(ctx, args, e)
	case "revoke":
		return sandboxRevoke(ctx, args, e)
	case "fail":
		return sandboxFail(ctx, args, e)
	case "lifetimes":
		return sandboxLifetimes(ctx, args, e)
	case "stats":
		return sandboxStats(ctx, args, e)
	case "emit":
		return sandboxEmit(ctx, args, e)
	case "fail-deliveries":
		return sandboxFailDeliveries(ctx, args, e)
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, sandboxUsage)
		return nil
	default:
		fmt.Fprint(e.stderr, sandboxUsage)
		return fmt.Errorf("unknown sandbox command %q", cmd)
	}
}

// stringsFlag is a flag that may be given several times.
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

func envOr(e env, name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

func sandboxFlags(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet("taskjuice sandbox "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

func parseSandboxFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func sandboxServe(ctx context.Context, args []string, e env) error {
	fs := sandboxFlags("serve", e)
	listen := fs.String("listen", envOr(e, "TASKJUICE_SANDBOX_LISTEN", "127.0.0.1:8090"), "address to listen on (TASKJUICE_SANDBOX_LISTEN)")
	baseURL := fs.String("base-url", e.getenv("TASKJUICE_SANDBOX_BASE_URL"), "public URL of the sandbox (TASKJUICE_SANDBOX_BASE_URL; default http://LISTEN)")
	adminToken := fs.String("admin-token", e.getenv("TASKJUICE_SANDBOX_ADMIN_TOKEN"), "bearer token for the admin API (TASKJUICE_SANDBOX_ADMIN_TOKEN; default: a random one, printed)")
	clientID := fs.String("client-id", "taskjuice", "OAuth client id to register")
	clientSecret := fs.String("client-secret", e.getenv("TASKJUICE_APP_SANDBOX_CHAT_CLIENT_SECRET"), "its secret (TASKJUICE_APP_SANDBOX_CHAT_CLIENT_SECRET); empty makes it a public client relying on PKCE")
	var redirects stringsFlag
	fs.Var(&redirects, "redirect-uri", "redirect URI registered for the client; repeat for more (default http://127.0.0.1:8080/oauth/callback)")
	stateFile := fs.String("state-file", e.getenv("TASKJUICE_SANDBOX_STATE_FILE"), "JSON file keeping grants, tokens and messages across restarts (TASKJUICE_SANDBOX_STATE_FILE; default: memory only)")
	accessTTL := fs.Duration("access-ttl", sandbox.DefaultAccessTTL, "access token lifetime")
	refreshTTL := fs.Duration("refresh-ttl", sandbox.DefaultRefreshTTL, "refresh token lifetime")
	if err := parseSandboxFlags(fs, args); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return fmt.Errorf("listen %q: want host:port", *listen)
	}
	if *baseURL == "" {
		*baseURL = "http://" + *listen
	}
	if len(redirects) == 0 {
		redirects = stringsFlag{"http://127.0.0.1:8080/oauth/callback"}
	}
	generated := false
	if *adminToken == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		*adminToken, generated = hex.EncodeToString(b), true
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	// Every built-in sandbox app is a client of its own; --client-id
	// renames Sandbox Chat's.
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: *baseURL})
	if err != nil {
		return fmt.Errorf("app catalog: %w", err)
	}
	clients := sandboxClients(cat, *clientSecret, redirects)
	for i := range clients {
		if clients[i].ID == catalog.SandboxClientID(catalog.SandboxKey) {
			clients[i].ID = *clientID
		}
	}
	p, err := sandbox.New(sandbox.Options{
		BaseURL:    *baseURL,
		Clients:    clients,
		AccessTTL:  *accessTTL,
		RefreshTTL: *refreshTTL,
		AdminToken: *adminToken,
		StatePath:  *stateFile,
		Log:        log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ep := p.Endpoints()
	fmt.Fprintf(e.stdout, "Sandbox Chat is serving at %s\n  authorize: %s\n  token:     %s\n  revoke:    %s\n  API:       %s\n  client:    %s (%s)\n",
		*baseURL, ep.Authorize, ep.Token, ep.Revoke, ep.API, *clientID, map[bool]string{true: "public, PKCE only", false: "confidential"}[*clientSecret == ""])
	if generated {
		fmt.Fprintf(e.stdout, "  admin token (generated): %s\n", *adminToken)
	}
	// Requests held by a timeout fault must not hold up shutdown.
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()
	err = server.Serve(ctx, ln, p.Handler(), log)
	log.Info("sandbox stopped")
	return err
}

// adminClient adds --url and --admin-token to fs and returns a builder for
// the client once the flags are parsed.
func adminClient(fs *flag.FlagSet, e env) func() (*sandbox.AdminClient, error) {
	u := fs.String("url", envOr(e, "TASKJUICE_SANDBOX_URL", "http://127.0.0.1:8090"), "URL of the running sandbox's root (TASKJUICE_SANDBOX_URL)")
	tok := fs.String("admin-token", e.getenv("TASKJUICE_SANDBOX_ADMIN_TOKEN"), "its admin token (TASKJUICE_SANDBOX_ADMIN_TOKEN)")
	return func() (*sandbox.AdminClient, error) { return sandbox.NewAdminClient(*u, *tok, nil) }
}

func printJSON(e env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func sandboxGrants(ctx context.Context, args []string, e env) error {
	fs := sandboxFlags("grants", e)
	client := adminClient(fs, e)
	if err := parseSandboxFlags(fs, args); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	grants, err := c.Grants(ctx)
	if err != nil {
		return err
	}
	return printJSON(e, grants)
}

func sandboxRevoke(ctx context.Context, args []string, e env) error {
	fs := sandboxFlags("revoke", e)
	client := adminClient(fs, e)
	grant := fs.String("grant", "", "id of the grant to revoke")
	account := fs.String("account", "", "name of the sandbox account whose grants to revoke")
	if err := parseSandboxFlags(fs, args); err != nil {
		return err
	}
	if (*grant == "") == (*account == "") {
		return errors.New("give exactly one of --grant and --account")
	}
	c, err := client()
	if err != nil {
		return err
	}
	if *grant != "" {
		if err := c.RevokeGrant(ctx, *grant); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "revoked grant %s\n", *grant)
		return nil
	}
	n, err := c.RevokeAccount(ctx, *account)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "revoked %d grant(s) of %q\n", n, *account)
	return nil
}

func sandboxFail(ctx context.Context, args []string, e env) error {
	fs := sandboxFlags("fail", e)
	client := adminClient(fs, e)
	count := fs.Int("count", 1, "how many token requests fail (0 clears)")
	kind := fs.String("kind", "500", "how they fail: 500, 429 or timeout")
	retryAfter := fs.Duration("retry-after", 5*time.Second, "Retry-After for 429 (whole seconds)")
	if err := parseSandboxFlags(fs, args); err != nil {
		return err
	}
	if *count < 0 {
		return errors.New("--count cannot be negative")
	}
	c, err := client()
	if err != nil {
		return err
	}
	if err := c.FailNext(ctx, *count, sandbox.FaultKind(*kind), *retryAfter); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "the next %d token request(s) will fail with %s\n", *count, *kind)
	return nil
}

func sandboxEmit(ctx context.Context, args []string, e env) error {
	fs := sandboxFlags("emit", e)
	client := adminClient(fs, e)
	account := fs.String("account", "", "name of the sandbox account")
	channel := fs.String("channel", "general", "channel to post to")
	text := fs.String("text", "Message", "text of each message, numbered")
	count := fs.Int("count", 1, "how many messages (1 to 10000)")
	if err := parseSandboxFlags(fs, args); err != nil {
		return err
	}
	if *account == "" {
		return errors.New("--account is required")
	}
	c, err := client()
	if err != nil {
		return err
	}
	msgs, err := c.Emit(ctx, *account, *channel, *text, *count)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "posted %d message(s) to #%s of %q\n", len(msgs), strings.TrimPrefix(*channel, "#"), *account)
	return nil
}

func sandboxFailDeliveries(ctx context.Context, args []string, e env) error {
	fs := sandboxFlags("fail-deliveries", e)
	client := adminClient(fs, e)
	count := fs.Int("count", 1, "how many delivery attempts fail (0 clears)")
	if err := parseSandboxFlags(fs, args); err != nil {
		return err
	}
	if *count < 0 {
		return errors.New("--count cannot be negative")
	}
	c, err := client()
	if err != nil {
		return err
	}
	if err := c.FailDeliveries(ctx, *count); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "the next %d webhook delivery attempt(s) will fail and be retried\n", *count)
	return nil
}

func sandboxLifetimes(ctx context.Context, args []string, e env) error {
	fs := sandboxFlags("lifetimes", e)
	client := adminClient(fs, e)
	access := fs.Duration("access", 0, "access token lifetime, e.g. 30s (0 = unchanged)")
	refresh := fs.Duration("refresh", 0, "refresh token lifetime, e.g. 720h (0 = unchanged)")
	if err := parseSandboxFlags(fs, args); err != nil {
		return err
	}
	if *access < 0 || *refresh < 0 {
		return errors.New("lifetimes cannot be negative")
	}
	c, err := client()
	if err != nil {
		return err
	}
	l, err := c.SetLifetimes(ctx, *access, *refresh)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "access tokens live %s, refresh tokens %s\n", l.AccessTTL, l.RefreshTTL)
	return nil
}

func sandboxStats(ctx context.Context, args []string, e env) error {
	fs := sandboxFlags("stats", e)
	client := adminClient(fs, e)
	if err := parseSandboxFlags(fs, args); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	st, err := c.Stats(ctx)
	if err != nil {
		return err
	}
	return printJSON(e, st)
}

// sandboxClients registers each built-in sandbox app of the catalog as its
// own client of the sandbox provider, so its consent page names the app
// asking for access. They share one secret (empty: public clients, PKCE).
func sandboxClients(cat *catalog.Catalog, secret string, redirects []string) []sandbox.Client {
	var out []sandbox.Client
	for _, c := range cat.SandboxClients() {
		out = append(out, sandbox.Client{ID: c.ID, Name: c.Name, Secret: secret, RedirectURIs: redirects})
	}
	return out
}
