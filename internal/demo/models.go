package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/agent"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/llm"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/workflow"
)

// ModelKeyFile holds the sandbox model endpoint's key in the data folder,
// so the demo's model provider keeps working across restarts.
const ModelKeyFile = "sandbox-model.key"

// SandboxModelKey reads the sandbox model key from the data folder, making
// one the first time.
func SandboxModelKey(dataDir string) (string, error) {
	path := filepath.Join(dataDir, ModelKeyFile)
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	key := "sk-sandbox-" + account.GeneratePassword()
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return key, nil
}

// workspace is the demo's workspace.
func workspace(ctx context.Context, d *db.DB, accounts *account.Service) (account.Workspace, error) {
	var accountID string
	if err := d.Read().QueryRowContext(ctx, `SELECT value FROM install_facts WHERE key = $1`, factKey).Scan(&accountID); err != nil {
		return account.Workspace{}, fmt.Errorf("find the demo: %w", err)
	}
	return accounts.WorkspaceBySlug(ctx, account.Principal{AccountID: accountID, Role: account.RoleOwner}, WorkspaceSlug)
}

// sandboxChat is the id of the demo's active Sandbox Chat connection, ""
// when there is none.
func sandboxChat(ctx context.Context, conns *connection.Service, ws account.Workspace) (string, error) {
	list, err := conns.List(ctx, ws, connection.StatusActive)
	if err != nil {
		return "", err
	}
	for _, c := range list {
		if c.AppKey == "sandbox-chat" {
			return c.ID, nil
		}
	}
	return "", nil
}

// AddModels gives the demo workspace the sandbox's scripted models as its
// model provider, priced like a small and a large hosted model, so agents,
// AI steps and the cost page work with no outside service.
func AddModels(ctx context.Context, d *db.DB, accounts *account.Service, models *llm.Service, sandboxURL, key string) error {
	ws, err := workspace(ctx, d, accounts)
	if err != nil {
		return err
	}
	_, err = models.Create(ctx, ws.ID, llm.ProviderInput{Name: "Sandbox models", BaseURL: sandboxURL + "/v1", APIKey: key,
		Models: []llm.ModelInput{
			{Model: sandbox.ModelSmall, InputUSDPerMTok: "0.15", OutputUSDPerMTok: "0.60", MaxOutputTokens: 1024},
			{Model: sandbox.ModelLarge, InputUSDPerMTok: "2.50", OutputUSDPerMTok: "10", MaxOutputTokens: 4096},
		}})
	return err
}

// FollowSandbox keeps the demo's sandbox model provider pointed at this
// server's sandbox, whose address moves with the base URL.
func FollowSandbox(ctx context.Context, d *db.DB, accounts *account.Service, models *llm.Service, sandboxURL string) error {
	ws, err := workspace(ctx, d, accounts)
	if err != nil {
		return err
	}
	ps, err := models.List(ctx, ws.ID)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.Name != "Sandbox models" || !strings.HasSuffix(p.BaseURL, "/sandbox/v1") || p.BaseURL == sandboxURL+"/v1" {
			continue
		}
		in := llm.ProviderInput{Name: p.Name, BaseURL: sandboxURL + "/v1"}
		for _, m := range p.Models {
			in.Models = append(in.Models, llm.ModelInput{Model: m.Model, InputUSDPerMTok: llm.USD(m.InputPerMTok.Decimal()),
				OutputUSDPerMTok: llm.USD(m.OutputPerMTok.Decimal()), MaxOutputTokens: m.MaxOutputTokens})
		}
		if _, err := models.Update(ctx, ws.ID, p.ID, in); err != nil {
			return err
		}
	}
	return nil
}

// AddAgent gives the demo workspace an agent driven by the sandbox's small
// model, posting to Sandbox Chat through the demo's connection.
func AddAgent(ctx context.Context, d *db.DB, accounts *account.Service, conns *connection.Service, models *llm.Service, agents *agent.Service) error {
	ws, err := workspace(ctx, d, accounts)
	if err != nil {
		return err
	}
	chat, err := sandboxChat(ctx, conns, ws)
	if err != nil {
		return err
	}
	ps, err := models.List(ctx, ws.ID)
	if err != nil {
		return err
	}
	if chat == "" || len(ps) == 0 {
		return errors.New("the demo has no Sandbox Chat connection or model provider")
	}
	_, err = agents.Create(ctx, ws, agent.Spec{
		Name:         "Lead notifier",
		Instructions: "When a lead comes in, post it to the #general channel of Sandbox Chat, then answer with a one-line summary.",
		Tools:        []workflow.AgentTool{{Name: "post-message", App: "sandbox-chat", Action: "post-message", ConnectionID: chat}},
		Model:        &workflow.ModelRef{ProviderID: ps[0].ID, Name: sandbox.ModelSmall},
		MaxTokens:    300,
	}, "")
	return err
}
