// Package vault holds the key that encrypts credentials at rest and seals
// and opens secrets with it (AES-256-GCM). Sealed values carry the id of the
// key that sealed them, so keys can be rotated.
package vault

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// KeyFileName is the key file created in the data folder when no key is
// configured.
const KeyFileName = "secret.key"

// Key is a 256-bit encryption key and its id.
type Key struct {
	ID    string
	bytes []byte
}

// String never prints the key material.
func (k Key) String() string { return "vault.Key(" + k.ID + ")" }

// LogValue keeps the key out of structured logs as well.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// ParseKey reads a key written as 64 hex digits or as base64 of 32 bytes.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	var b []byte
	if len(s) == 64 {
		if h, err := hex.DecodeString(s); err == nil {
			b = h
		}
	}
	if b == nil {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if d, err := enc.DecodeString(s); err == nil {
				b = d
				break
			}
		}
	}
	if len(b) != 32 {
		return Key{}, errors.New("secret key must be 32 bytes, written as 64 hex digits or base64 (try: openssl rand -base64 32)")
	}
	return newKey(b), nil
}

func newKey(b []byte) Key {
	sum := sha256.Sum256(b)
	return Key{ID: hex.EncodeToString(sum[:4]), bytes: b}
}

// LoadKey returns the configured key: fromEnv when set, else the key file in
// dataDir, created with mode 0600 on first use. created reports whether a new
// file was written.
func LoadKey(fromEnv, dataDir string) (key Key, created bool, err error) {
	if strings.TrimSpace(fromEnv) != "" {
		k, err := ParseKey(fromEnv)
		if err != nil {
			return Key{}, false, fmt.Errorf("TASKJUICE_SECRET_KEY: %w", err)
		}
		return k, false, nil
	}
	path := filepath.Join(dataDir, KeyFileName)
	b, err := os.ReadFile(path)
	if err == nil {
		if info, statErr := os.Stat(path); statErr == nil && info.Mode().Perm()&0o077 != 0 {
			return Key{}, false, fmt.Errorf("key file %s is readable by others (mode %v); run chmod 600 on it", path, info.Mode().Perm())
		}
		k, err := ParseKey(string(b))
		if err != nil {
			return Key{}, false, fmt.Errorf("key file %s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Key{}, false, fmt.Errorf("read key file: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return Key{}, false, fmt.Errorf("create data folder: %w", err)
	}
	raw, err := randomKeyBytes()
	if err != nil {
		return Key{}, false, err
	}
	// O_EXCL: if another process created the file meanwhile, use theirs.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadKey("", dataDir)
	}
	if err != nil {
		return Key{}, false, fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.WriteString(encodeKey(raw)); err != nil {
		f.Close()
		return Key{}, false, fmt.Errorf("write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return Key{}, false, fmt.Errorf("write key file: %w", err)
	}
	return newKey(raw), true, nil
}

func randomKeyBytes() ([]byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return raw, nil
}

func encodeKey(raw []byte) string { return base64.StdEncoding.EncodeToString(raw) + "\n" }
