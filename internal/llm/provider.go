// Package llm owns a workspace's model providers — OpenAI-compatible
// endpoints called with the workspace's own API key, sealed in the vault —
// their models' prices, and the client that calls them: chat completions
// with tools and JSON output, usage and cost in integer micro-dollars, and
// typed errors that tell a passing failure from a permanent one.
//
// The key is opened only inside a Client and only ever sent in the
// Authorization header: no Provider, Response, error or log line holds it.
package llm

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/textcheck"
	"taskjuice/internal/vault"
)

// Provider is what may be shown of a model provider: never its key.
type Provider struct {
	ID          string `json:"id"`
	WorkspaceID string `json:"workspaceId"`
	Name        string `json:"name"`
	BaseURL     string `json:"baseUrl"`
	// HasKey is always true for a stored provider; KeyHint shows the key's
	// first and last characters ("sk-…abcd"), or only dots for a short key.
	HasKey    bool         `json:"hasKey"`
	KeyHint   string       `json:"keyHint"`
	Models    []ModelPrice `json:"models"`
	CreatedAt time.Time    `json:"createdAt"`
	UpdatedAt time.Time    `json:"updatedAt"`
}

// ModelInput is one model of a provider as a person or a client gives it;
// the prices are dollars per million tokens.
type ModelInput struct {
	Model            string `json:"model"`
	InputUSDPerMTok  USD    `json:"inputUsdPerMTok"`
	OutputUSDPerMTok USD    `json:"outputUsdPerMTok"`
	MaxOutputTokens  int    `json:"maxOutputTokens"`
}

// ProviderInput is what it takes to store a provider.
type ProviderInput struct {
	Name    string `json:"name"`
	BaseURL string `json:"baseUrl"`
	// APIKey is the key to seal. On Update an empty key keeps the stored
	// one.
	APIKey string       `json:"apiKey"`
	Models []ModelInput `json:"models"`
}

// Limits of a provider.
const (
	MaxModels          = 50
	MaxPricePerMTok    = 100_000 * Dollar // a sanity bound, far above any real price
	MaxOutputTokens    = 1_000_000
	DefaultMaxOutput   = 4096
	maxKeyLength       = 4096
	maxModelNameLength = 200
)

// Options configure the service.
type Options struct {
	// HTTPClient calls the providers; nil means a client with a two-minute
	// timeout.
	HTTPClient *http.Client
	// Now is the clock; nil means db.Now.
	Now func() time.Time
}

// Service is the model-provider domain.
type Service struct {
	db   *db.DB
	keys *vault.Store
	http *http.Client
	now  func() time.Time
}

// NewService returns the service; keys seal and open the providers' keys,
// kept in the one vault table with every other secret.
func NewService(d *db.DB, keys vault.Keyring, o Options) *Service {
	s := &Service{db: d, keys: vault.NewStore(d, keys), http: o.HTTPClient, now: o.Now}
	if s.http == nil {
		s.http = &http.Client{Timeout: 2 * time.Minute}
	}
	if s.now == nil {
		s.now = db.Now
	}
	return s
}

// checked is a validated input.
type checked struct {
	name, baseURL, key string
	models             []ModelPrice
}

// validate checks every field and reports every problem at once (joined
// apperr field errors: name, baseUrl, apiKey, models, models[i].model, ...).
func validate(in ProviderInput, keyRequired bool) (checked, error) {
	var errs []error
	c := checked{name: strings.TrimSpace(in.Name), baseURL: strings.TrimSpace(in.BaseURL), key: strings.TrimSpace(in.APIKey)}
	if n := utf8.RuneCountInString(c.name); n < 1 || n > 100 {
		errs = append(errs, apperr.Invalid("name", "Name must be 1–100 characters"))
	} else if err := textcheck.Line("name", "A name", c.name); err != nil {
		errs = append(errs, err)
	}
	if msg := checkBaseURL(c.baseURL); msg != "" {
		errs = append(errs, apperr.Invalid("baseUrl", msg))
	}
	c.baseURL = strings.TrimRight(c.baseURL, "/")
	switch {
	case c.key == "" && keyRequired:
		errs = append(errs, apperr.Invalid("apiKey", "Enter the provider's API key"))
	case len(c.key) > maxKeyLength:
		errs = append(errs, apperr.Invalid("apiKey", "The API key is too long"))
	case strings.ContainsAny(c.key, " \t\r\n"):
		errs = append(errs, apperr.Invalid("apiKey", "The API key cannot contain spaces"))
	}
	seen := map[string]bool{}
	for i, m := range in.Models {
		f := fmt.Sprintf("models[%d].", i)
		mp := ModelPrice{Model: strings.TrimSpace(m.Model), MaxOutputTokens: m.MaxOutputTokens}
		switch {
		case mp.Model == "":
			errs = append(errs, apperr.Invalid(f+"model", "Enter the model's name"))
		case utf8.RuneCountInString(mp.Model) > maxModelNameLength || strings.ContainsAny(mp.Model, " \t\r\n"):
			errs = append(errs, apperr.Invalid(f+"model", "A model name is up to 200 characters, without spaces"))
		case seen[mp.Model]:
			errs = append(errs, apperr.Invalid(f+"model", "This model is listed twice"))
		}
		seen[mp.Model] = true
		var err error
		if mp.InputPerMTok, err = price(m.InputUSDPerMTok); err != nil {
			errs = append(errs, apperr.Invalid(f+"inputUsdPerMTok", "The input price "+err.Error()))
		}
		if mp.OutputPerMTok, err = price(m.OutputUSDPerMTok); err != nil {
			errs = append(errs, apperr.Invalid(f+"outputUsdPerMTok", "The output price "+err.Error()))
		}
		if mp.MaxOutputTokens == 0 {
			mp.MaxOutputTokens = DefaultMaxOutput
		}
		if mp.MaxOutputTokens < 1 || mp.MaxOutputTokens > MaxOutputTokens {
			errs = append(errs, apperr.Invalid(f+"maxOutputTokens", fmt.Sprintf("Max output tokens must be 1–%d", MaxOutputTokens)))
		}
		c.models = append(c.models, mp)
	}
	switch {
	case len(in.Models) == 0:
		errs = append(errs, apperr.Invalid("models", "Add at least one model with its prices"))
	case len(in.Models) > MaxModels:
		errs = append(errs, apperr.Invalid("models", fmt.Sprintf("A provider can list at most %d models", MaxModels)))
	}
	if len(errs) > 0 {
		return checked{}, errors.Join(errs...)
	}
	return c, nil
}

func price(u USD) (Money, error) {
	if strings.TrimSpace(string(u)) == "" {
		return 0, errors.New("is required (0 is allowed)")
	}
	m, err := ParseMoney(string(u))
	if err != nil {
		return 0, errors.New(AmountProblem(err))
	}
	if m > MaxPricePerMTok {
		return 0, errors.New("is too large")
	}
	return m, nil
}

// checkBaseURL says what is wrong with a base URL, or "".
func checkBaseURL(s string) string {
	const want = "Enter the API's base URL, such as https://api.openai.com/v1"
	if s == "" || len(s) > 2000 {
		return want
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return want
	}
	if u.User != nil {
		return "Put the key in the API key field, not in the URL"
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#") {
		return "The base URL cannot have a query or a fragment"
	}
	return ""
}

// KeyHint is what may be shown of a key: its first three and last four
// characters when it is long enough that they give nothing away.
func KeyHint(key string) string {
	if len(key) < 20 {
		return "••••"
	}
	return key[:3] + "…" + key[len(key)-4:]
}

var errNameTaken = apperr.Conflict("name_taken", "name", "A provider with this name already exists in the workspace")

// Create stores a provider of the workspace, its key sealed.
func (s *Service) Create(ctx context.Context, workspaceID string, in ProviderInput) (Provider, error) {
	c, err := validate(in, true)
	if err != nil {
		return Provider{}, err
	}
	now := s.now()
	p := Provider{ID: db.NewID(), WorkspaceID: workspaceID, Name: c.name, BaseURL: c.baseURL, HasKey: true,
		KeyHint: KeyHint(c.key), Models: c.models, CreatedAt: now, UpdatedAt: now}
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		handle, err := s.keys.Put(ctx, tx, "", vault.KindModelKey, p.ID, []byte(c.key))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO model_providers (id, workspace_id, name, base_url, key_handle, key_hint, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`, p.ID, workspaceID, p.Name, p.BaseURL, handle, p.KeyHint, now)
		if db.IsUniqueViolation(err) {
			return errNameTaken
		}
		if err != nil {
			return fmt.Errorf("insert provider: %w", err)
		}
		return putModels(ctx, tx, p.ID, c.models)
	})
	if err != nil {
		return Provider{}, err
	}
	return p, nil
}

func putModels(ctx context.Context, tx db.Querier, providerID string, models []ModelPrice) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM model_prices WHERE provider_id = $1`, providerID); err != nil {
		return fmt.Errorf("clear model prices: %w", err)
	}
	for i, m := range models {
		_, err := tx.ExecContext(ctx, `INSERT INTO model_prices (provider_id, model, position, input_per_mtok, output_per_mtok, max_output_tokens)
			VALUES ($1, $2, $3, $4, $5, $6)`, providerID, m.Model, i, int64(m.InputPerMTok), int64(m.OutputPerMTok), m.MaxOutputTokens)
		if err != nil {
			return fmt.Errorf("insert model price: %w", err)
		}
	}
	return nil
}

// Update replaces a provider's name, base URL and models, and its key when
// in.APIKey is not empty.
func (s *Service) Update(ctx context.Context, workspaceID, id string, in ProviderInput) (Provider, error) {
	c, err := validate(in, false)
	if err != nil {
		return Provider{}, err
	}
	now := s.now()
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		var res sql.Result
		var err error
		if c.key != "" {
			var handle sql.NullString
			err = tx.QueryRowContext(ctx, `SELECT key_handle FROM model_providers WHERE workspace_id = $1 AND id = $2`, workspaceID, id).Scan(&handle)
			if errors.Is(err, sql.ErrNoRows) {
				return errNotFound
			}
			if err != nil {
				return fmt.Errorf("read provider: %w", err)
			}
			h, perr := s.keys.Put(ctx, tx, handle.String, vault.KindModelKey, id, []byte(c.key))
			if perr != nil {
				return perr
			}
			res, err = tx.ExecContext(ctx, `UPDATE model_providers SET name = $1, base_url = $2, key_handle = $3, key_hint = $4, updated_at = $5
				WHERE workspace_id = $6 AND id = $7`, c.name, c.baseURL, h, KeyHint(c.key), now, workspaceID, id)
		} else {
			res, err = tx.ExecContext(ctx, `UPDATE model_providers SET name = $1, base_url = $2, updated_at = $3 WHERE workspace_id = $4 AND id = $5`,
				c.name, c.baseURL, now, workspaceID, id)
		}
		if db.IsUniqueViolation(err) {
			return errNameTaken
		}
		if err != nil {
			return fmt.Errorf("update provider: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("update provider: %w", err)
		} else if n == 0 {
			return errNotFound
		}
		return putModels(ctx, tx, id, c.models)
	})
	if err != nil {
		return Provider{}, err
	}
	return s.Get(ctx, workspaceID, id)
}

var errNotFound = apperr.NotFound("There is no model provider with this id in the workspace.")

const providerCols = `id, workspace_id, name, base_url, key_hint, created_at, updated_at`

func scanProvider(row interface{ Scan(...any) error }) (Provider, error) {
	var p Provider
	if err := row.Scan(&p.ID, &p.WorkspaceID, &p.Name, &p.BaseURL, &p.KeyHint, &p.CreatedAt, &p.UpdatedAt); err != nil {
		return Provider{}, err
	}
	p.HasKey, p.CreatedAt, p.UpdatedAt = true, p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, nil
}

// Get returns a provider of the workspace; another workspace's is not
// found.
func (s *Service) Get(ctx context.Context, workspaceID, id string) (Provider, error) {
	p, err := scanProvider(s.db.Read().QueryRowContext(ctx, `SELECT `+providerCols+` FROM model_providers WHERE workspace_id = $1 AND id = $2`, workspaceID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Provider{}, errNotFound
	}
	if err != nil {
		return Provider{}, fmt.Errorf("read provider: %w", err)
	}
	if err := s.loadModels(ctx, []*Provider{&p}); err != nil {
		return Provider{}, err
	}
	return p, nil
}

// ByName returns the workspace's provider of that name (any case).
func (s *Service) ByName(ctx context.Context, workspaceID, name string) (Provider, error) {
	p, err := scanProvider(s.db.Read().QueryRowContext(ctx, `SELECT `+providerCols+` FROM model_providers WHERE workspace_id = $1 AND lower(name) = lower($2)`,
		workspaceID, strings.TrimSpace(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return Provider{}, apperr.NotFound(fmt.Sprintf("There is no model provider named %q in the workspace.", name))
	}
	if err != nil {
		return Provider{}, fmt.Errorf("read provider: %w", err)
	}
	if err := s.loadModels(ctx, []*Provider{&p}); err != nil {
		return Provider{}, err
	}
	return p, nil
}

// List returns the workspace's providers by name.
func (s *Service) List(ctx context.Context, workspaceID string) ([]Provider, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT `+providerCols+` FROM model_providers WHERE workspace_id = $1 ORDER BY lower(name), id`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	var out []Provider
	for rows.Next() {
		p, err := scanProvider(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan provider: %w", err)
		}
		out = append(out, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	ptrs := make([]*Provider, len(out))
	for i := range out {
		ptrs[i] = &out[i]
	}
	return out, s.loadModels(ctx, ptrs)
}

func (s *Service) loadModels(ctx context.Context, ps []*Provider) error {
	if len(ps) == 0 {
		return nil
	}
	byID := map[string]*Provider{}
	args := make([]any, len(ps))
	marks := make([]string, len(ps))
	for i, p := range ps {
		byID[p.ID] = p
		p.Models = []ModelPrice{}
		args[i] = p.ID
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT provider_id, model, input_per_mtok, output_per_mtok, max_output_tokens FROM model_prices
		WHERE provider_id IN (`+strings.Join(marks, ", ")+`) ORDER BY provider_id, position`, args...)
	if err != nil {
		return fmt.Errorf("read model prices: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var m ModelPrice
		var in, out int64
		if err := rows.Scan(&id, &m.Model, &in, &out, &m.MaxOutputTokens); err != nil {
			return fmt.Errorf("scan model price: %w", err)
		}
		m.InputPerMTok, m.OutputPerMTok = Money(in), Money(out)
		if p := byID[id]; p != nil {
			p.Models = append(p.Models, m)
		}
	}
	return rows.Err()
}

// Delete removes a provider, its prices and its sealed key.
func (s *Service) Delete(ctx context.Context, workspaceID, id string) error {
	return s.db.InTx(ctx, func(tx db.Querier) error {
		var handle sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT key_handle FROM model_providers WHERE workspace_id = $1 AND id = $2`, workspaceID, id).Scan(&handle)
		if errors.Is(err, sql.ErrNoRows) {
			return errNotFound
		}
		if err != nil {
			return fmt.Errorf("delete provider: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM model_providers WHERE workspace_id = $1 AND id = $2`, workspaceID, id); err != nil {
			return fmt.Errorf("delete provider: %w", err)
		}
		return s.keys.Delete(ctx, tx, handle.String)
	})
}

// Client returns a client for a provider of the workspace, its key opened.
func (s *Service) Client(ctx context.Context, workspaceID, providerID string) (*Client, error) {
	p, err := s.Get(ctx, workspaceID, providerID)
	if err != nil {
		return nil, err
	}
	var handle sql.NullString
	err = s.db.Read().QueryRowContext(ctx, `SELECT key_handle FROM model_providers WHERE id = $1`, p.ID).Scan(&handle)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read provider key: %w", err)
	}
	key, err := s.keys.Open(ctx, s.db.Read(), handle.String, p.ID)
	if err != nil {
		return nil, fmt.Errorf("open key of provider %s: %w", p.ID, err)
	}
	c := &Client{provider: p, models: map[string]ModelPrice{}, key: string(key), http: s.http}
	for _, m := range p.Models {
		c.models[m.Model] = m
	}
	return c, nil
}
