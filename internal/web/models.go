package web

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/llm"
)

// modelRow is one model line of the provider form, as typed.
type modelRow struct {
	Model, Input, Output, MaxTokens string
	Errors                          map[string]string // model, input, output, maxTokens
}

// providerForm is the add or edit form: the key is never put back in it.
type providerForm struct {
	ID, Name, BaseURL, KeyHint string
	Rows                       []modelRow
	Errors                     map[string]string // name, baseUrl, apiKey, models
	Error                      string
}

type modelsData struct {
	Providers []llm.Provider
	Form      providerForm
	Editing   bool
	CanWrite  bool
}

// blankRows is how many empty model lines the form offers beyond the
// filled ones.
const blankRows = 3

func formFromProvider(p llm.Provider) providerForm {
	f := providerForm{ID: p.ID, Name: p.Name, BaseURL: p.BaseURL, KeyHint: p.KeyHint}
	for _, m := range p.Models {
		f.Rows = append(f.Rows, modelRow{Model: m.Model, Input: m.InputPerMTok.Decimal(), Output: m.OutputPerMTok.Decimal(),
			MaxTokens: strconv.Itoa(m.MaxOutputTokens)})
	}
	return f
}

func (f *providerForm) pad() {
	for range blankRows {
		f.Rows = append(f.Rows, modelRow{})
	}
}

func (h *Handler) modelProviders(w http.ResponseWriter, r *http.Request, v view) {
	form := providerForm{BaseURL: "https://api.openai.com/v1"}
	h.renderModels(w, r, v, http.StatusOK, form, false)
}

func (h *Handler) renderModels(w http.ResponseWriter, r *http.Request, v view, status int, form providerForm, editing bool) {
	if h.Models == nil {
		h.errorPage(w, r, v.P, errNoSpend)
		return
	}
	list, err := h.Models.List(r.Context(), v.Workspace.ID)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	form.pad()
	v.Title = "Model providers · " + v.Workspace.Name
	if editing {
		v.Title = form.Name + " · Model providers · " + v.Workspace.Name
	}
	v.Data = modelsData{Providers: list, Form: form, Editing: editing, CanWrite: v.P.Can(account.CapWrite)}
	h.render(w, r, status, "models", v)
}

func (h *Handler) editModelProvider(w http.ResponseWriter, r *http.Request, v view) {
	if h.Models == nil {
		h.errorPage(w, r, v.P, errNoSpend)
		return
	}
	p, err := h.Models.Get(r.Context(), v.Workspace.ID, r.PathValue("id"))
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	h.renderModels(w, r, v, http.StatusOK, formFromProvider(p), true)
}

// readProviderForm reads the form into the service's input and the form
// to show again; blank model lines are skipped, and rows maps each model
// of the input back to its line.
func readProviderForm(r *http.Request) (llm.ProviderInput, providerForm, []int) {
	f := r.PostForm
	in := llm.ProviderInput{Name: f.Get("name"), BaseURL: f.Get("baseUrl"), APIKey: f.Get("apiKey")}
	form := providerForm{Name: in.Name, BaseURL: in.BaseURL}
	var rows []int
	for i := 0; i < llm.MaxModels+blankRows; i++ {
		k := strconv.Itoa(i)
		if !f.Has("model_" + k) {
			break
		}
		row := modelRow{Model: strings.TrimSpace(f.Get("model_" + k)), Input: strings.TrimSpace(f.Get("input_" + k)),
			Output: strings.TrimSpace(f.Get("output_" + k)), MaxTokens: strings.TrimSpace(f.Get("maxTokens_" + k))}
		if row.Model == "" && row.Input == "" && row.Output == "" && row.MaxTokens == "" {
			continue
		}
		mi := llm.ModelInput{Model: row.Model, InputUSDPerMTok: llm.USD(row.Input), OutputUSDPerMTok: llm.USD(row.Output)}
		if row.MaxTokens != "" {
			n, err := strconv.Atoi(row.MaxTokens)
			if err != nil {
				n = -1 // reported as out of range
			}
			mi.MaxOutputTokens = n
		}
		rows = append(rows, len(form.Rows))
		form.Rows = append(form.Rows, row)
		in.Models = append(in.Models, mi)
	}
	return in, form, rows
}

// showErrors puts the service's field errors next to their fields.
func (form *providerForm) showErrors(err error, rows []int) {
	e, _ := apperr.As(err)
	form.Errors = map[string]string{}
	fields := apperr.Fields(err)
	if len(fields) == 0 && e != nil {
		form.Error = e.Message
	}
	for field, msg := range fields {
		var i int
		var sub string
		if n, _ := fmt.Sscanf(field, "models[%d].%s", &i, &sub); n == 2 && i >= 0 && i < len(rows) {
			row := &form.Rows[rows[i]]
			if row.Errors == nil {
				row.Errors = map[string]string{}
			}
			key := map[string]string{"model": "model", "inputUsdPerMTok": "input", "outputUsdPerMTok": "output", "maxOutputTokens": "maxTokens"}[sub]
			row.Errors[key] = msg
			continue
		}
		form.Errors[field] = msg
	}
}

func (h *Handler) saveModelProvider(w http.ResponseWriter, r *http.Request, v view) {
	if h.Models == nil {
		h.errorPage(w, r, v.P, errNoSpend)
		return
	}
	if !v.P.Can(account.CapWrite) {
		h.errorPage(w, r, v.P, apperr.Forbidden("Your role cannot change model providers"))
		return
	}
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	id := r.PathValue("id")
	in, form, rows := readProviderForm(r)
	var err error
	if id == "" {
		_, err = h.Models.Create(r.Context(), v.Workspace.ID, in)
	} else {
		var p llm.Provider
		if p, err = h.Models.Get(r.Context(), v.Workspace.ID, id); err == nil {
			form.ID, form.KeyHint = p.ID, p.KeyHint
			_, err = h.Models.Update(r.Context(), v.Workspace.ID, id, in)
		}
	}
	if err != nil {
		if _, ok := apperr.As(err); !ok || apperr.IsNotFound(err) {
			h.errorPage(w, r, v.P, err)
			return
		}
		form.showErrors(err, rows)
		h.renderModels(w, r, v, apperr.Status(err), form, id != "")
		return
	}
	setFlash(w, "provider-saved")
	redirect(w, r, "/"+v.Workspace.Slug+"/settings/models")
}

func (h *Handler) deleteModelProvider(w http.ResponseWriter, r *http.Request, v view) {
	if h.Models == nil {
		h.errorPage(w, r, v.P, errNoSpend)
		return
	}
	if !v.P.Can(account.CapWrite) {
		h.errorPage(w, r, v.P, apperr.Forbidden("Your role cannot change model providers"))
		return
	}
	if err := h.Models.Delete(r.Context(), v.Workspace.ID, r.PathValue("id")); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "provider-deleted")
	redirect(w, r, "/"+v.Workspace.Slug+"/settings/models")
}
