package connection

import (
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// Credential is what the vault holds for a connection: an OAuth token set,
// or an API key with its secret fields. It is marshalled to JSON, sealed,
// and never leaves the server.
type Credential struct {
	OAuth  *OAuthToken       `json:"oauth,omitempty"`
	APIKey string            `json:"apiKey,omitempty"`
	Fields map[string]string `json:"fields,omitempty"` // secret extra fields
}

// OAuthToken is an OAuth 2.0 token set.
type OAuthToken struct {
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken,omitempty"`
	TokenType    string    `json:"tokenType,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	Scope        string    `json:"scope,omitempty"`
}

// String keeps tokens out of anything that prints a credential.
func (c Credential) String() string { return "connection.Credential(redacted)" }

// GoString keeps tokens out of %#v too.
func (c Credential) GoString() string { return c.String() }

// String keeps tokens out of anything that prints a token set.
func (t OAuthToken) String() string { return "connection.OAuthToken(redacted)" }

// GoString keeps tokens out of %#v too.
func (t OAuthToken) GoString() string { return t.String() }

// FromOAuth2 converts a token from golang.org/x/oauth2.
func FromOAuth2(t *oauth2.Token) *OAuthToken {
	scope, _ := t.Extra("scope").(string)
	return &OAuthToken{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: t.TokenType, Expiry: t.Expiry.UTC(), Scope: scope}
}

// OAuth2 converts to golang.org/x/oauth2's token.
func (t *OAuthToken) OAuth2() *oauth2.Token {
	return &oauth2.Token{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: t.TokenType, Expiry: t.Expiry}
}

func (c Credential) marshal() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode credential: %w", err)
	}
	return b, nil
}

func unmarshalCredential(b []byte) (Credential, error) {
	var c Credential
	if err := json.Unmarshal(b, &c); err != nil {
		return Credential{}, fmt.Errorf("decode credential: %w", err)
	}
	return c, nil
}
