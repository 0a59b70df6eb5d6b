package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/agent"
	"taskjuice/internal/catalog"
	"taskjuice/internal/config"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/demo"
	"taskjuice/internal/egress"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/llm"
	"taskjuice/internal/mail"
	"taskjuice/internal/notify"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/server"
	"taskjuice/internal/spend"
	"taskjuice/internal/trigger"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

const usage = `TaskJuice — workflow automation for agencies.

Usage:
  taskjuice serve             start the server and its background workers
  taskjuice migrate           apply database migrations and exit
  taskjuice create-account    create an agency account and its owner
  taskjuice create-user       add a staff member or a client
  taskjuice reset-password    set a new password for a person
  taskjuice reset-mfa         turn off a person's MFA when their authenticator is lost
  taskjuice accounts          list accounts and their workspaces
  taskjuice rotate-key        re-encrypt every stored credential under a new key
  taskjuice sandbox           run or control Sandbox Chat, the built-in test provider
  taskjuice bench             run a benchmark (bench refresh: the token refresher)

Run "taskjuice COMMAND -h" for a command's flags. Every flag can also be set
with the TASKJUICE_ variable shown in its help; a flag wins over a variable.
`

func run(ctx context.Context, args []string, e env) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, args, e)
	case "migrate":
		return cmdMigrate(ctx, args, e)
	case "create-account":
		return cmdCreateAccount(ctx, args, e)
	case "create-user":
		return cmdCreateUser(ctx, args, e)
	case "reset-password":
		return cmdResetPassword(ctx, args, e)
	case "reset-mfa":
		return cmdResetMFA(ctx, args, e)
	case "accounts":
		return cmdAccounts(ctx, args, e)
	case "rotate-key":
		return cmdRotateKey(ctx, args, e)
	case "sandbox":
		return cmdSandbox(ctx, args, e)
	case "bench":
		return cmdBench(ctx, args, e)
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	default:
		fmt.Fprint(e.stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// parse reads the shared configuration plus a command's own flags.
func parse(name string, args []string, e env, own func(fs *flag.FlagSet)) (*config.Config, error) {
	fs := flag.NewFlagSet("taskjuice "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfg := config.Register(fs, e.getenv)
	if own != nil {
		own(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := cfg.Finish(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openDB opens and migrates the configured database.
func openDB(ctx context.Context, cfg *config.Config, log *slog.Logger) (*db.DB, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	d, err := db.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	applied, err := d.Migrate(ctx)
	if err != nil {
		d.Close()
		return nil, err
	}
	for _, m := range applied {
		log.Info("applied migration", "version", m.Version, "name", m.Name)
	}
	return d, nil
}

func cmdServe(ctx context.Context, args []string, e env) error {
	cfg, err := parse("serve", args, e, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg, e.stderr)
	keys, created, err := vault.LoadKeyring(cfg.SecretKey, cfg.OldSecretKeys, cfg.DataDir)
	if err != nil {
		return err
	}
	if created {
		log.Info("created a new credential encryption key; back it up with the database", "file", filepath.Join(cfg.DataDir, vault.KeyFileName), "key_id", keys.Current.ID)
	}
	d, err := openDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	accounts := account.NewService(d)
	accounts.UseVault(keys)
	var demoPassword string
	if !cfg.NoDemo {
		res, err := demo.Seed(ctx, d, accounts)
		if err != nil {
			return err
		}
		if res.Created {
			demoPassword = res.Password
			demo.PrintWelcome(e.stdout, cfg.BaseURL, res.Password)
		}
	}
	// The built-in sandbox under /sandbox, or one running elsewhere that
	// several processes share.
	sandboxURL, builtinSandbox := "", false
	switch {
	case cfg.ExternalSandboxURL != "":
		sandboxURL = strings.TrimSuffix(cfg.ExternalSandboxURL, "/")
	case !cfg.NoSandbox:
		sandboxURL, builtinSandbox = cfg.BaseURL+"/sandbox", true
	}
	cat, err := catalog.Load(catalog.Options{Getenv: e.getenv, GenericAppsFile: cfg.AppsFile, SandboxURL: sandboxURL})
	if err != nil {
		return fmt.Errorf("app catalog: %w", err)
	}
	var sb *sandbox.Provider
	modelKey := ""
	if builtinSandbox {
		if modelKey, err = demo.SandboxModelKey(cfg.DataDir); err != nil {
			return err
		}
		sb, err = sandbox.New(sandbox.Options{
			ModelKey:   modelKey,
			BaseURL:    sandboxURL,
			Clients:    sandboxClients(cat, e.getenv(catalog.ClientSecretEnv(catalog.SandboxKey)), []string{cfg.BaseURL + "/oauth/callback"}),
			AdminToken: e.getenv("TASKJUICE_SANDBOX_ADMIN_TOKEN"),
			StatePath:  filepath.Join(cfg.DataDir, "sandbox.json"),
			Log:        log.With("component", "sandbox"),
		})
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		defer sb.Close()
	}
	conns := connection.NewService(d, keys)
	callback := cfg.BaseURL + "/oauth/callback"
	// One registry for /metrics, counting what the engine and the refresher
	// of this process do.
	metrics := server.NewMetrics()
	refresher := connection.NewRefresher(conns, connection.CatalogOAuth(cat, callback), connection.RefresherOptions{Log: log, Outcome: metrics.RefreshOutcome})
	workflows := workflow.NewService(d)
	// HTTP steps and app actions reach public addresses only, unless the
	// operator allows more; the catalog's own endpoints (the sandbox) are
	// trusted by AppClient.
	steps := egress.Client(cfg.Egress(), 2*time.Minute)
	apps := connection.NewAppClient(conns, refresher, cat, steps)
	// Failure alerts: raised in the transaction that records a failed run;
	// their webhooks go out through the same guard as HTTP steps.
	notifier := notify.NewService(d, cat)
	notifier.SetLog(log.With("component", "alerts"))
	notifier.FailureAlerts(vault.NewStore(d, keys), steps, server.ChatPoster(cat, conns, apps))
	eng := engine.New(d, workflows, engine.Builtins(cat, apps, steps), engine.Expressions(expr.Limits{}), engine.Options{
		Log: log.With("component", "engine"), DrainTimeout: cfg.Engine.DrainTimeout, Lease: cfg.Engine.Lease,
		Heartbeat: cfg.Engine.Heartbeat, HeartbeatTimeout: cfg.Engine.HeartbeatTimeout, Observer: metrics, BaseURL: cfg.BaseURL,
		Failures: notifier,
	})
	opts := server.Options{
		Metrics: metrics, DB: d, Accounts: accounts, Connections: conns, Refresher: refresher, Catalog: cat,
		Workflows: workflows, Engine: eng, Log: log, SecureCookies: cfg.SecureCookies(), BaseURL: cfg.BaseURL,
		HSTS: cfg.HSTS(), TrustedProxies: cfg.ProxyRanges(),
		Webhooks:  trigger.New(d, keys, eng, workflows, trigger.Options{Log: log.With("component", "webhooks"), Responder: eng}),
		Scheduler: trigger.NewScheduler(d, eng, trigger.SchedulerOptions{Log: log.With("component", "schedules")}),
		Poller:    trigger.NewPoller(d, eng, apps, conns, cat, pollerOptions(sandboxURL != "", log)),
		// App-wide signing secrets (Slack's) come from the catalog.
		Listener: trigger.NewListener(d, keys, eng, apps, cat, trigger.ListenerOptions{
			BaseURL: cfg.BaseURL, Accounts: conns.ExternalAccountOf, Log: log.With("component", "instant-triggers")}),
		Notify: notifier,
		Models: llm.NewService(d, keys, llm.Options{}),
		Spend:  spend.NewService(d, spend.Options{Alerts: notifier}),
	}
	if cfg.SMTP.Host != "" {
		sender, err := mail.NewSMTP(cfg.SMTP)
		if err != nil {
			return err
		}
		opts.Mail = mail.NewOutbox(d, sender, log.With("component", "mailer"))
		opts.Notify.EmailAlerts(cfg.BaseURL)
	}
	if sb != nil {
		opts.Sandbox = sb.Handler()
		if demoPassword != "" {
			if err := demo.AddModels(ctx, d, accounts, opts.Models, sandboxURL, modelKey); err != nil {
				log.Warn("could not give the demo its sandbox models", "err", err)
			}
		} else if !cfg.NoDemo {
			if err := demo.FollowSandbox(ctx, d, accounts, opts.Models, sandboxURL); err != nil {
				log.Debug("demo sandbox models", "err", err)
			}
		}
	}
	srv, err := server.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("TaskJuice is serving", "url", cfg.BaseURL, "listen", ln.Addr().String(), "database", string(d.Dialect()))
	workers := srv.Workers()
	if demoPassword != "" && sb != nil {
		// The demo's Sandbox Chat connection goes through the real consent
		// flow over HTTP, so it runs beside the server (the listener is
		// bound; requests wait for it to accept).
		workers = append(workers, server.Worker{Name: "demo-sandbox-connection", Run: func(ctx context.Context) error {
			if !connectDemoSandbox(ctx, log, cfg.BaseURL, ln.Addr().String(), demoPassword) {
				return nil
			}
			agents := agent.NewService(workflows, conns, cat, opts.Models)
			if err := demo.AddAgent(ctx, d, accounts, conns, opts.Models, agents); err != nil && ctx.Err() == nil {
				log.Warn("could not give the demo its agent", "err", err)
			}
			if err := demo.AddTriggerWorkflow(ctx, d, accounts, conns, workflows); err != nil && ctx.Err() == nil {
				log.Warn("could not give the demo its trigger workflow", "err", err)
			}
			if err := demo.AddStarterWorkflow(ctx, d, accounts, conns, workflows); err != nil && ctx.Err() == nil {
				log.Warn("could not give the demo its starter workflow", "err", err)
			}
			return nil
		}})
	}
	err = server.Serve(ctx, ln, srv.Handler(), log, workers...)
	log.Info("stopped")
	return err
}

// connectDemoSandbox makes the demo's Sandbox Chat connection, trying again
// with a growing pause when an attempt fails (a busy machine can time a
// request out on the first start), and says how long it took.
func connectDemoSandbox(ctx context.Context, log *slog.Logger, baseURL, addr, password string) bool {
	start := time.Now()
	pause := time.Second
	for attempt := 1; ; attempt++ {
		err := demo.ConnectSandbox(ctx, baseURL, addr, password)
		if err == nil {
			log.Info("connected the demo's Sandbox Chat", "attempt", attempt, "took", time.Since(start).Round(time.Millisecond))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn("could not connect the demo's Sandbox Chat", "attempt", attempt, "err", err)
		if attempt == 5 {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pause):
		}
		pause *= 2
	}
}

func cmdMigrate(ctx context.Context, args []string, e env) error {
	cfg, err := parse("migrate", args, e, nil)
	if err != nil {
		return err
	}
	d, err := openDB(ctx, cfg, newLogger(cfg, e.stderr))
	if err != nil {
		return err
	}
	defer d.Close()
	v, err := d.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "database is at schema version %d\n", v)
	return nil
}

// passwordCommand runs an admin command that sets someone's password: the
// password comes from standard input (--password-stdin) or is generated and
// printed after fn succeeds.
func passwordCommand(ctx context.Context, cfg *config.Config, e env, fromStdin bool, fn func(svc *account.Service, password string) error) error {
	pw := account.GeneratePassword()
	if fromStdin {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read password: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	d, err := openDB(ctx, cfg, newLogger(cfg, e.stderr))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := fn(account.NewService(d), pw); err != nil {
		return err
	}
	if !fromStdin {
		fmt.Fprintf(e.stdout, "password: %s\n", pw)
	}
	return nil
}

func cmdCreateAccount(ctx context.Context, args []string, e env) error {
	var name, email, owner string
	var stdinPW bool
	cfg, err := parse("create-account", args, e, func(fs *flag.FlagSet) {
		fs.StringVar(&name, "name", "", "agency name (required)")
		fs.StringVar(&email, "email", "", "owner's email (required)")
		fs.StringVar(&owner, "owner-name", "", "owner's full name")
		fs.BoolVar(&stdinPW, "password-stdin", false, "read the owner's password from standard input instead of generating one")
	})
	if err != nil {
		return err
	}
	if name == "" || email == "" {
		return errors.New("create-account needs --name and --email")
	}
	return passwordCommand(ctx, cfg, e, stdinPW, func(svc *account.Service, pw string) error {
		acct, user, err := svc.CreateAccount(ctx, name, account.NewUser{Email: email, Name: owner, Password: pw})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "created account %q (%s) owned by %s\n", acct.Name, acct.ID, user.Email)
		return nil
	})
}

func cmdCreateUser(ctx context.Context, args []string, e env) error {
	var email, name, role, accountID, workspaceID string
	var stdinPW bool
	cfg, err := parse("create-user", args, e, func(fs *flag.FlagSet) {
		fs.StringVar(&email, "email", "", "email (required)")
		fs.StringVar(&name, "name", "", "full name")
		fs.StringVar(&role, "role", "account-member", "account-admin, account-member or workspace-client")
		fs.StringVar(&accountID, "account", "", "account id, for staff (see: taskjuice accounts)")
		fs.StringVar(&workspaceID, "workspace", "", "workspace id, for a workspace-client")
		fs.BoolVar(&stdinPW, "password-stdin", false, "read the password from standard input instead of generating one")
	})
	if err != nil {
		return err
	}
	if email == "" {
		return errors.New("create-user needs --email")
	}
	switch account.Role(role) {
	case account.RoleClient:
		if workspaceID == "" {
			return errors.New("a workspace-client needs --workspace")
		}
	case account.RoleAdmin, account.RoleMember:
		if accountID == "" {
			return errors.New("staff need --account")
		}
	default:
		return fmt.Errorf("--role %q: want account-admin, account-member or workspace-client (the owner role moves only by transfer)", role)
	}
	return passwordCommand(ctx, cfg, e, stdinPW, func(svc *account.Service, pw string) error {
		nu := account.NewUser{Email: email, Name: name, Password: pw}
		var user account.User
		var err error
		if account.Role(role) == account.RoleClient {
			user, err = svc.CreateClient(ctx, workspaceID, nu)
		} else {
			user, err = svc.CreateStaff(ctx, accountID, nu, account.Role(role))
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "created %s (%s) as %s\n", user.Email, user.ID, role)
		return nil
	})
}

func cmdResetPassword(ctx context.Context, args []string, e env) error {
	var email string
	var stdinPW bool
	cfg, err := parse("reset-password", args, e, func(fs *flag.FlagSet) {
		fs.StringVar(&email, "email", "", "email of the person (required)")
		fs.BoolVar(&stdinPW, "password-stdin", false, "read the new password from standard input instead of generating one")
	})
	if err != nil {
		return err
	}
	if email == "" {
		return errors.New("reset-password needs --email")
	}
	return passwordCommand(ctx, cfg, e, stdinPW, func(svc *account.Service, pw string) error {
		if err := svc.ResetPassword(ctx, email, pw); err != nil {
			return fmt.Errorf("reset password for %s: %w", email, err)
		}
		fmt.Fprintf(e.stdout, "password reset for %s; their sessions were ended\n", email)
		return nil
	})
}

func cmdResetMFA(ctx context.Context, args []string, e env) error {
	var email string
	cfg, err := parse("reset-mfa", args, e, func(fs *flag.FlagSet) {
		fs.StringVar(&email, "email", "", "email of the person (required)")
	})
	if err != nil {
		return err
	}
	if email == "" {
		return errors.New("reset-mfa needs --email")
	}
	d, err := openDB(ctx, cfg, newLogger(cfg, e.stderr))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := account.NewService(d).ResetMFA(ctx, email); err != nil {
		return fmt.Errorf("reset MFA for %s: %w", email, err)
	}
	fmt.Fprintf(e.stdout, "MFA turned off for %s; their sessions were ended. They can set it up again at /account/security.\n", email)
	return nil
}

func cmdAccounts(ctx context.Context, args []string, e env) error {
	cfg, err := parse("accounts", args, e, nil)
	if err != nil {
		return err
	}
	d, err := openDB(ctx, cfg, newLogger(cfg, e.stderr))
	if err != nil {
		return err
	}
	defer d.Close()
	dir, err := account.NewService(d).Directory(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT ID\tACCOUNT\tWORKSPACE ID\tSLUG")
	for _, entry := range dir {
		if len(entry.Workspaces) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t\t\n", entry.Account.ID, entry.Account.Name)
		}
		for _, w := range entry.Workspaces {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", entry.Account.ID, entry.Account.Name, w.ID, w.Slug)
		}
	}
	return tw.Flush()
}

// errStillSealed makes rotate-key exit non-zero while an old key is needed.
var errStillSealed = errors.New("rotate-key: secrets remain under old keys")

// byKind renders counts by kind as " (3 connection credentials, 1 webhook
// secrets)", or nothing when empty.
func byKind(counts map[vault.Kind]int) string {
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		if counts[vault.Kind(k)] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[vault.Kind(k)], vault.Kind(k).Label()))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// cmdRotateKey re-encrypts every secret in the vault under a new key. With the key
// in TASKJUICE_SECRET_KEY, the new key is that variable and the previous one
// goes in TASKJUICE_OLD_SECRET_KEYS for the run. With the key file, a new
// key is generated: written first as secret.key.next, then every secret is
// re-encrypted, then the old file is kept as secret.key.old-ID and the new
// one becomes secret.key — an interruption at any point loses nothing,
// because every key file in the data folder is loaded for reading.
func cmdRotateKey(ctx context.Context, args []string, e env) error {
	cfg, err := parse("rotate-key", args, e, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg, e.stderr)
	keys, _, err := vault.LoadKeyring(cfg.SecretKey, cfg.OldSecretKeys, cfg.DataDir)
	if err != nil {
		return err
	}
	fileManaged := cfg.SecretKey == ""
	retiring := keys.Current
	if fileManaged {
		next, text, err := vault.GenerateKey()
		if err != nil {
			return err
		}
		// A next-key file left by an interrupted rotation is already in the
		// keyring; finish with it rather than making another.
		nextPath := filepath.Join(cfg.DataDir, vault.NextKeyFileName)
		if b, rerr := os.ReadFile(nextPath); rerr == nil {
			if next, err = vault.ParseKey(string(b)); err != nil {
				return fmt.Errorf("%s: %w", nextPath, err)
			}
		} else if err := vault.WriteKeyFile(nextPath, text); err != nil {
			return err
		}
		keys = keys.WithCurrent(next)
	}
	d, err := openDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	// One loop over the one vault table: every kind of secret at once.
	store := vault.NewStore(d, keys)
	rot, err := store.Rotate(ctx)
	if err != nil {
		return fmt.Errorf("rotate keys: %w", err)
	}
	if fileManaged {
		if err := vault.RetireKeyFile(cfg.DataDir, retiring); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "re-encrypted %d secrets under key %s%s\n", rot.Total(), keys.Current.ID, byKind(rot.Resealed))
	// Count after the loop rather than trust it: a process still sealing
	// with an old key, or a value no key opens, keeps that key needed.
	left, err := store.NotCurrent(ctx)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		perKey := map[string]map[vault.Kind]int{}
		var ids []string
		for _, r := range left {
			if perKey[r.KeyID] == nil {
				perKey[r.KeyID] = map[vault.Kind]int{}
				ids = append(ids, r.KeyID)
			}
			perKey[r.KeyID][r.Kind] += r.Count
		}
		for _, id := range ids {
			n := 0
			for _, c := range perKey[id] {
				n += c
			}
			fmt.Fprintf(e.stdout, "still sealed under old key %s: %d secrets%s\n", id, n, byKind(perKey[id]))
		}
		if len(rot.Unopenable) > 0 {
			fmt.Fprintf(e.stdout, "%d secrets could not be opened with any key loaded (tampered, or sealed for another owner)\n", len(rot.Unopenable))
		}
		fmt.Fprintln(e.stdout, "keep the old keys: restart every running taskjuice process with the new key, then run taskjuice rotate-key again")
		return errStillSealed
	}
	if fileManaged {
		fmt.Fprintln(e.stdout, "restart every running taskjuice process so it uses the new key")
		fmt.Fprintln(e.stdout, "nothing is sealed under an old key any more; the secret.key.old-* files are no longer needed")
	} else if cfg.OldSecretKeys != "" {
		fmt.Fprintln(e.stdout, "nothing is sealed under an old key any more; TASKJUICE_OLD_SECRET_KEYS is no longer needed")
	}
	return nil
}
