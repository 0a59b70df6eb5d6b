package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/account"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/vault"
)

const benchUsage = `Benchmarks, run by people: each prints its figures and the targets they
are held to.

Usage:
  taskjuice bench refresh   the token refresher: an idle pass over many
                            connections, and refreshes per second against
                            the built-in sandbox provider
  taskjuice bench engine    durable steps per second: runs of a chain of
                            Transform steps, executed by the engine's workers
  taskjuice bench intake    webhook intake: concurrent clients posting to a
                            webhook over loopback, accepted runs per second
                            and latency, every 202 checked to be one run
  taskjuice bench resume    agent runs held for reauthorization on one
                            connection: memory while they are held, and how
                            soon all run again after the reconnect
  taskjuice bench runs      the runs pages over a million runs: the "Paused
                            for reauth" list and the alert banner, timed on
                            the server
  taskjuice bench prune     run retention: a pass pruning a million finished
                            runs past retention, in small transactions
  taskjuice bench triggers  app triggers polling the built-in sandbox: a
                            scheduler pass over many with nothing due,
                            polls per second, and new items into runs

Run "taskjuice bench COMMAND -h" for a command's flags.
`

func cmdBench(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, benchUsage)
		return errors.New("bench: name a benchmark")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "refresh":
		return benchRefresh(ctx, args, e)
	case "engine":
		return benchEngine(ctx, args, e)
	case "engine-worker": // started by "bench engine --processes N"
		return benchEngineWorker(ctx, args, e)
	case "intake":
		return benchIntake(ctx, args, e)
	case "resume":
		return benchResume(ctx, args, e)
	case "runs":
		return benchRuns(ctx, args, e)
	case "prune":
		return benchPrune(ctx, args, e)
	case "triggers":
		return benchTriggers(ctx, args, e)
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, benchUsage)
		return nil
	default:
		fmt.Fprint(e.stderr, benchUsage)
		return fmt.Errorf("unknown benchmark %q", cmd)
	}
}

// Targets of the refresher, from its acceptance criteria.
const (
	idlePassTarget    = 5 * time.Millisecond
	refreshRateTarget = 1000.0
)

type benchRefreshFlags struct {
	benchDB
	connections, refreshes, passes, workers, consentWorkers int
	cpuProfile                                              string
}

// benchDB is what every bench shares: the database it works in, whether
// to keep it afterwards, and how long it may take.
type benchDB struct {
	databaseURL string
	keep        bool
	timeout     time.Duration
}

// flags registers --database-url, --keep and --timeout.
func (b *benchDB) flags(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&b.databaseURL, "database-url", "", "a postgres:// URL (the bench works in a schema of its own, dropped at the end), or a new SQLite file; default: SQLite in a temporary folder")
	fs.DurationVar(&b.timeout, "timeout", timeout, "give up after this long")
	fs.BoolVar(&b.keep, "keep", false, "keep the database (or PostgreSQL schema) afterwards, for inspection, and print where it is")
}

// open refuses arguments left after the flags, bounds ctx by the timeout,
// opens the bench's own database and prints the bench's first line. done
// removes the database (unless kept) and ends the context.
func (b benchDB) open(ctx context.Context, fs *flag.FlagSet, e env, bench string) (_ context.Context, _ *db.DB, done func(), _ error) {
	if fs.NArg() > 0 {
		return nil, nil, nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	d, name, cleanup, err := openBenchDB(ctx, b.databaseURL, b.keep, e.stderr)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	fmt.Fprintf(e.stdout, "taskjuice bench %s: %s, %s, %d CPUs\n", bench, name, runtime.Version(), runtime.NumCPU())
	return ctx, d, func() { cleanup(); cancel() }, nil
}

// benchLog sends warnings to stderr; the figures go to stdout.
func benchLog(e env) *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func benchRefresh(ctx context.Context, args []string, e env) error {
	var f benchRefreshFlags
	fs := flag.NewFlagSet("taskjuice bench refresh", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.IntVar(&f.connections, "connections", 100000, "connections stored in the database")
	fs.IntVar(&f.refreshes, "refreshes", 5000, "connections with a real sandbox grant, made due and refreshed")
	f.flags(fs, 15*time.Minute)
	fs.IntVar(&f.passes, "passes", 200, "passes timed with nothing due")
	fs.IntVar(&f.workers, "workers", 0, "0 refreshes through the background pass (Refresher.Pass); N > 0 instead calls Refresher.Refresh from N goroutines")
	fs.IntVar(&f.consentWorkers, "consent-workers", 16, "concurrent consents while obtaining the grants")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the refreshes to this file (for go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case f.connections < 1:
		return errors.New("--connections must be at least 1")
	case f.refreshes < 1 || f.refreshes > f.connections:
		return fmt.Errorf("--refreshes must be between 1 and --connections (%d)", f.connections)
	case f.passes < 1:
		return errors.New("--passes must be at least 1")
	case f.workers < 0 || f.consentWorkers < 1:
		return errors.New("--workers must be 0 or more and --consent-workers at least 1")
	}
	ctx, d, done, err := f.open(ctx, fs, e, "refresh")
	if err != nil {
		return err
	}
	defer done()
	b, err := newRefreshBench(ctx, d, benchLog(e))
	if err != nil {
		return err
	}
	defer b.close()
	return b.run(ctx, e.stdout, f)
}

// openBenchDB opens and migrates a database of the bench's own: a fresh
// SQLite file, or a fresh schema in the PostgreSQL database. cleanup closes
// it and removes what the bench created.
func openBenchDB(ctx context.Context, rawURL string, keep bool, stderr io.Writer) (*db.DB, string, func(), error) {
	var (
		dsn, name string
		undo      []func()
	)
	cleanup := func() {
		for _, fn := range slices.Backward(undo) {
			fn()
		}
	}
	switch {
	case strings.HasPrefix(rawURL, "postgres://") || strings.HasPrefix(rawURL, "postgresql://"):
		var raw [6]byte
		_, _ = rand.Read(raw[:])
		schema := "bench_" + hex.EncodeToString(raw[:])
		admin, err := sql.Open("pgx", rawURL)
		if err != nil {
			return nil, "", nil, fmt.Errorf("open postgres: %w", err)
		}
		undo = append(undo, func() { admin.Close() })
		if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
			cleanup()
			return nil, "", nil, fmt.Errorf("create schema %s: %w", schema, err)
		}
		undo = append(undo, func() {
			if keep {
				fmt.Fprintf(stderr, "taskjuice bench: kept schema %s\n", schema)
				return
			}
			// The bench's context may have ended; the schema goes regardless.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if _, err := admin.ExecContext(dctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
				fmt.Fprintf(stderr, "taskjuice bench: drop schema %s: %v\n", schema, err)
			}
		})
		u, err := url.Parse(rawURL)
		if err != nil {
			cleanup()
			return nil, "", nil, fmt.Errorf("database URL: %w", err)
		}
		if u.Query().Has("search_path") {
			cleanup()
			return nil, "", nil, errors.New("database URL: leave search_path out; the bench sets it to its own schema")
		}
		// Appended rather than re-encoded, so the rest of the query stays
		// exactly as given (pgx reads "+" literally, not as a space).
		if u.RawQuery != "" {
			u.RawQuery += "&"
		}
		u.RawQuery += "search_path=" + schema
		dsn, name = u.String(), "PostgreSQL (schema "+schema+")"
	case rawURL == "":
		dir, err := os.MkdirTemp("", "taskjuice-bench-")
		if err != nil {
			return nil, "", nil, fmt.Errorf("temporary folder: %w", err)
		}
		undo = append(undo, func() {
			if keep {
				fmt.Fprintf(stderr, "taskjuice bench: kept %s\n", dir)
				return
			}
			os.RemoveAll(dir)
		})
		dsn, name = filepath.Join(dir, "taskjuice.db"), "SQLite (temporary file)"
	default:
		// Never a database that holds real data: the bench writes
		// thousands of connections.
		path := strings.TrimPrefix(strings.TrimPrefix(rawURL, "sqlite:"), "file:")
		if _, err := os.Stat(path); err == nil {
			return nil, "", nil, fmt.Errorf("%s exists: the bench only writes to a new SQLite file", path)
		}
		dsn, name = rawURL, "SQLite ("+path+")"
	}
	d, err := db.Open(ctx, dsn)
	if err != nil {
		cleanup()
		return nil, "", nil, err
	}
	undo = append(undo, func() { d.Close() })
	if _, err := d.Migrate(ctx); err != nil {
		cleanup()
		return nil, "", nil, err
	}
	return d, name, cleanup, nil
}

// refreshBench is the bench's world: a workspace, the vault, and the
// sandbox provider serving on a loopback port with TaskJuice registered as
// its client.
type refreshBench struct {
	d       *db.DB
	ws      account.Workspace
	conns   *connection.Service
	sb      *sandbox.Provider
	srv     *http.Server
	served  chan error
	hc      *http.Client
	cat     *catalog.Catalog
	app     catalog.App
	oauth   *oauth2.Config
	refresh *connection.Refresher
	keys    vault.Keyring // the vault's keys, for another stack on the same database
	keyText string        // the current key, as TASKJUICE_SECRET_KEY takes it
	secret  string        // the sandbox's OAuth client secret for TaskJuice
	sbURL   string        // where the sandbox serves
}

const benchRedirectURL = "http://127.0.0.1/oauth/callback"

func newRefreshBench(ctx context.Context, d *db.DB, log *slog.Logger) (*refreshBench, error) {
	b := &refreshBench{d: d}
	accounts := account.NewService(d)
	acct, _, err := accounts.CreateAccount(ctx, "Bench Agency", account.NewUser{Email: "owner@bench.example", Password: account.GeneratePassword()})
	if err != nil {
		return nil, fmt.Errorf("create account: %w", err)
	}
	if b.ws, err = accounts.CreateWorkspaceForAccount(ctx, acct.ID, "Bench", "bench"); err != nil {
		return nil, fmt.Errorf("create workspace: %w", err)
	}
	key, keyText, err := vault.GenerateKey()
	if err != nil {
		return nil, err
	}
	b.keys, b.keyText = vault.NewKeyring(key), keyText
	b.conns = connection.NewService(d, b.keys)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	base := "http://" + ln.Addr().String()
	b.sbURL = base
	secret := rand.Text()
	b.secret = secret
	b.sb, err = sandbox.New(sandbox.Options{BaseURL: base, Log: log.With("component", "sandbox"),
		Clients: []sandbox.Client{{ID: "taskjuice", Name: "TaskJuice", Secret: secret, RedirectURIs: []string{benchRedirectURL}}}})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	b.srv = &http.Server{Handler: b.sb.Handler(), ReadHeaderTimeout: 10 * time.Second}
	b.served = make(chan error, 1)
	go func() { b.served <- b.srv.Serve(ln) }()

	// The refresher gets its OAuth client the way "taskjuice serve" does:
	// from the catalog, whose Sandbox Chat entry points at this sandbox.
	cat, err := catalog.Load(catalog.Options{SandboxURL: base, Getenv: func(name string) string {
		if name == catalog.ClientSecretEnv(catalog.SandboxKey) {
			return secret
		}
		return ""
	}})
	if err != nil {
		b.close()
		return nil, fmt.Errorf("app catalog: %w", err)
	}
	b.cat = cat
	b.app, _ = cat.App(catalog.SandboxKey)
	if b.oauth, err = connection.OAuthConfig(b.app, benchRedirectURL); err != nil {
		b.close()
		return nil, err
	}
	// Enough idle connections that concurrent calls reuse them instead of
	// dialling anew (the default keeps two per host).
	b.hc = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}}
	b.refresh = connection.NewRefresher(b.conns, connection.CatalogOAuth(cat, benchRedirectURL),
		connection.RefresherOptions{HTTPClient: b.hc, Log: log.With("component", "refresher")})
	return b, nil
}

func (b *refreshBench) close() {
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.sb.Close()
	_ = b.srv.Shutdown(sctx)
	<-b.served
	b.hc.CloseIdleConnections()
}

func (b *refreshBench) run(ctx context.Context, out io.Writer, f benchRefreshFlags) error {
	// Real grants first, so that the refreshes below spend real refresh
	// tokens; their time is not part of any figure held to a target.
	start := time.Now()
	grants, err := b.grants(ctx, f.refreshes, f.consentWorkers)
	if err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Fprintf(out, "obtained %d sandbox grants through the consent flow (authorization code + PKCE, %d at a time): %s, %.0f/s\n",
		len(grants), f.consentWorkers, round(took), float64(len(grants))/took.Seconds())

	// Every connection is stored, none is due: the first --refreshes hold
	// the real grants, the rest a token set that is never refreshed.
	later := time.Now().Add(24 * time.Hour).UTC()
	idle := connection.Credential{OAuth: &connection.OAuthToken{AccessToken: "bench-idle-access", RefreshToken: "bench-idle-refresh",
		TokenType: "Bearer", Expiry: later.Add(time.Hour)}}
	start = time.Now()
	ids, err := b.conns.SeedForBench(ctx, b.ws, catalog.SandboxKey, f.connections, func(i int) connection.Credential {
		if i < len(grants) {
			return grants[i]
		}
		return idle
	}, &later)
	if err != nil {
		return err
	}
	took = time.Since(start)
	fmt.Fprintf(out, "seeded %d connections (refresh due in 24h), credentials sealed: %s, %.0f/s\n",
		len(ids), round(took), float64(len(ids))/took.Seconds())

	idleOK, err := b.idlePasses(ctx, out, "", len(ids), f.passes)
	if err != nil {
		return err
	}
	rateOK, err := b.throughput(ctx, out, ids[:f.refreshes], f)
	if err != nil {
		return err
	}
	// Again, now that the refreshed rows have moved in the index (and, on
	// PostgreSQL, left dead versions behind for vacuum): the state a
	// running server is in between refreshes.
	afterOK, err := b.idlePasses(ctx, out, " after the refreshes", len(ids), f.passes)
	if err != nil {
		return err
	}
	if !idleOK || !rateOK || !afterOK {
		return errors.New("bench refresh: a target was missed")
	}
	return nil
}

// grants obtains n grants from the sandbox through its consent flow, as a
// person connecting Sandbox Chat would: consent page, Allow, then the code
// exchanged with its PKCE verifier.
func (b *refreshBench) grants(ctx context.Context, n, workers int) ([]connection.Credential, error) {
	out := make([]connection.Credential, n)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hctx := context.WithValue(ctx, oauth2.HTTPClient, b.hc)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				tok, err := b.consent(hctx)
				if err != nil {
					cancel(fmt.Errorf("grant %d: %w", i+1, err))
					return
				}
				out[i] = connection.Credential{OAuth: connection.FromOAuth2(tok)}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

func (b *refreshBench) consent(ctx context.Context) (*oauth2.Token, error) {
	return b.consentAs(ctx, "Bench")
}

// consentAs consents as the sandbox account of that name.
func (b *refreshBench) consentAs(ctx context.Context, account string) (*oauth2.Token, error) {
	verifier := oauth2.GenerateVerifier()
	state := rand.Text()
	opts := append(connection.AuthCodeOptions(b.app), oauth2.S256ChallengeOption(verifier))
	back, err := sandbox.Consent(ctx, b.hc, b.oauth.AuthCodeURL(state, opts...), account, true)
	if err != nil {
		return nil, err
	}
	q := back.Query()
	if q.Get("state") != state || q.Get("code") == "" {
		return nil, fmt.Errorf("consent answered %s", back.Redacted())
	}
	return b.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
}

// idlePasses times passes that find nothing due among n connections.
func (b *refreshBench) idlePasses(ctx context.Context, out io.Writer, when string, n, passes int) (bool, error) {
	// A few untimed passes warm the pools and the statement caches.
	for range 5 {
		if _, err := b.refresh.Pass(ctx); err != nil {
			return false, err
		}
	}
	times := make([]time.Duration, 0, passes)
	for range passes {
		start := time.Now()
		got, err := b.refresh.Pass(ctx)
		took := time.Since(start)
		if err != nil {
			return false, err
		}
		if got != 0 {
			return false, fmt.Errorf("a pass with nothing due refreshed %d connections", got)
		}
		times = append(times, took)
	}
	slices.Sort(times)
	med, p99 := quantile(times, 0.5), quantile(times, 0.99)
	ok := p99 < idlePassTarget
	fmt.Fprintf(out, "pass with nothing due%s over %d connections (%d passes): min %s, median %s, p99 %s, max %s (target p99 < %s): %s\n",
		when, n, passes, ms(times[0]), ms(med), ms(p99), ms(times[len(times)-1]), ms(idlePassTarget), verdict(ok))
	return ok, nil
}

// throughput makes the connections due and refreshes them all, through the
// background pass (workers == 0) or through concurrent Refresh calls, then
// checks with the sandbox that each was refreshed exactly once.
func (b *refreshBench) throughput(ctx context.Context, out io.Writer, ids []string, f benchRefreshFlags) (bool, error) {
	workers := f.workers
	before := b.sb.Stats()
	marked, err := b.conns.MarkDue(ctx, ids, time.Now().Add(-time.Second))
	if err != nil {
		return false, err
	}
	if marked != len(ids) {
		return false, fmt.Errorf("made %d connections due, want %d", marked, len(ids))
	}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return false, fmt.Errorf("cpu profile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return false, fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var (
		done  int
		how   string
		start = time.Now()
	)
	if workers == 0 {
		how = fmt.Sprintf("Refresher.Pass, up to %d per pass", connection.PassLimit)
		passes := 0
		// Bounded: every pass takes up to PassLimit due connections, so a
		// healthy run needs len(ids)/PassLimit passes; allow slack for
		// refreshes that failed and wait for their retry.
		for limit := 4*len(ids)/connection.PassLimit + 20; passes < limit; {
			n, err := b.refresh.Pass(ctx)
			passes++
			if err != nil {
				return false, err
			}
			done += n
			if n == 0 {
				break
			}
		}
		how += fmt.Sprintf(", %d passes", passes)
	} else {
		how = fmt.Sprintf("Refresher.Refresh from %d goroutines", workers)
		var next, ok atomic.Int64
		var wg sync.WaitGroup
		var errMu sync.Mutex
		var firstErr error
		for range min(workers, len(ids)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(ids) || ctx.Err() != nil {
						return
					}
					if err := b.refresh.Refresh(ctx, ids[i]); err != nil {
						errMu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						errMu.Unlock()
						continue
					}
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return false, fmt.Errorf("refresh: %w", firstErr)
		}
		done = int(ok.Load())
	}
	took := time.Since(start)
	rate := float64(done) / took.Seconds()

	after := b.sb.Stats()
	once, more := 0, 0
	total := 0
	for grant, n := range after.Refreshes {
		n -= before.Refreshes[grant]
		total += n
		switch {
		case n == 1:
			once++
		case n > 1:
			more++
		}
	}
	tokenErrors := 0
	for code, n := range after.TokenErrors {
		tokenErrors += n - before.TokenErrors[code]
	}
	broken, err := b.conns.List(ctx, b.ws, connection.StatusError)
	if err != nil {
		return false, err
	}
	exact := done == len(ids) && once == len(ids) && more == 0 && total == len(ids) && tokenErrors == 0 && len(broken) == 0
	fmt.Fprintf(out, "refreshed %d of %d due connections in %s (%s): %.0f refreshes/s (target >= %.0f/s): %s\n",
		done, len(ids), round(took), how, rate, refreshRateTarget, verdict(rate >= refreshRateTarget))
	fmt.Fprintf(out, "sandbox counted %d refreshes over %d grants (%d refreshed once, %d more than once), %d token errors; %d connections in error: %s\n",
		total, len(after.Refreshes), once, more, tokenErrors, len(broken), verdict(exact))
	return exact && rate >= refreshRateTarget, nil
}

// quantile of sorted durations, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}
