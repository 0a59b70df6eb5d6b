package vault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Keyring is the current key, which seals everything new, plus older keys
// kept only to open what they sealed until it is re-encrypted
// (taskjuice rotate-key).
type Keyring struct {
	Current Key
	old     map[string]Key
}

// NewKeyring returns a keyring sealing with current and opening with
// current or any of old.
func NewKeyring(current Key, old ...Key) Keyring {
	k := Keyring{Current: current, old: map[string]Key{}}
	for _, o := range old {
		if o.ID != current.ID {
			k.old[o.ID] = o
		}
	}
	return k
}

// OldIDs lists the ids of the keys kept for opening only.
func (k Keyring) OldIDs() []string {
	ids := make([]string, 0, len(k.old))
	for id := range k.old {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Seal encrypts with the current key.
func (k Keyring) Seal(plaintext, aad []byte) (Sealed, error) { return k.Current.Seal(plaintext, aad) }

// Open decrypts with whichever key sealed s.
func (k Keyring) Open(s Sealed, aad []byte) ([]byte, error) {
	if s.KeyID == k.Current.ID {
		return k.Current.Open(s, aad)
	}
	if o, ok := k.old[s.KeyID]; ok {
		return o.Open(s, aad)
	}
	return nil, fmt.Errorf("%w (key id %s; add it to TASKJUICE_OLD_SECRET_KEYS)", ErrWrongKey, s.KeyID)
}

// Old key files in the data folder: keys retired by rotate-key, and a key
// being rotated in (kept readable if rotation was interrupted).
const (
	oldKeyFilePrefix = KeyFileName + ".old-"
	NextKeyFileName  = KeyFileName + ".next"
)

// LoadKeyring loads the current key (LoadKey) and the old ones: those listed
// in oldFromEnv (comma-separated) and the retired key files in dataDir.
func LoadKeyring(fromEnv, oldFromEnv, dataDir string) (Keyring, bool, error) {
	current, created, err := LoadKey(fromEnv, dataDir)
	if err != nil {
		return Keyring{}, false, err
	}
	var old []Key
	for _, s := range strings.Split(oldFromEnv, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		k, err := ParseKey(s)
		if err != nil {
			return Keyring{}, false, fmt.Errorf("TASKJUICE_OLD_SECRET_KEYS: %w", err)
		}
		old = append(old, k)
	}
	files, err := filepath.Glob(filepath.Join(dataDir, oldKeyFilePrefix+"*"))
	if err != nil {
		return Keyring{}, false, err
	}
	files = append(files, filepath.Join(dataDir, NextKeyFileName))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return Keyring{}, false, fmt.Errorf("read key file: %w", err)
		}
		k, err := ParseKey(string(b))
		if err != nil {
			return Keyring{}, false, fmt.Errorf("key file %s: %w", f, err)
		}
		old = append(old, k)
	}
	return NewKeyring(current, old...), created, nil
}

// GenerateKey returns a new random key and its file contents.
func GenerateKey() (Key, string, error) {
	raw, err := randomKeyBytes()
	if err != nil {
		return Key{}, "", err
	}
	return newKey(raw), encodeKey(raw), nil
}

// WriteKeyFile writes key text to path with mode 0600, failing if the file
// exists, and syncs it to disk before returning.
func WriteKeyFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync key file: %w", err)
	}
	return f.Close()
}

// RetireKeyFile moves the current key file aside as an old key (still
// loaded for opening) and makes the next key file current.
func RetireKeyFile(dataDir string, current Key) error {
	cur := filepath.Join(dataDir, KeyFileName)
	if err := os.Rename(cur, filepath.Join(dataDir, oldKeyFilePrefix+current.ID)); err != nil {
		return fmt.Errorf("retire key file: %w", err)
	}
	if err := os.Rename(filepath.Join(dataDir, NextKeyFileName), cur); err != nil {
		return fmt.Errorf("install new key file: %w", err)
	}
	return nil
}

// WithCurrent returns a keyring that seals with next and still opens
// everything this one opens.
func (k Keyring) WithCurrent(next Key) Keyring {
	old := []Key{k.Current}
	for _, o := range k.old {
		old = append(old, o)
	}
	return NewKeyring(next, old...)
}
