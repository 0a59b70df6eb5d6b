package vault_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"taskjuice/internal/vault"
)

func TestLoadKeyCreatesPrivateFileOnce(t *testing.T) {
	dir := t.TempDir()
	k1, created, err := vault.LoadKey("", dir)
	if err != nil || !created {
		t.Fatalf("first load: created=%v err=%v, want created", created, err)
	}
	info, err := os.Stat(filepath.Join(dir, vault.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Fatalf("key file mode: got %v, want 0600", got)
	}
	k2, created, err := vault.LoadKey("", dir)
	if err != nil || created || k2.ID != k1.ID {
		t.Fatalf("second load: id %s created=%v err=%v, want id %s not created", k2.ID, created, err, k1.ID)
	}
	if err := os.Chmod(filepath.Join(dir, vault.KeyFileName), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := vault.LoadKey("", dir); err == nil {
		t.Fatal("world-readable key file: got nil error")
	}
}

func TestKeyFromEnvironmentWins(t *testing.T) {
	dir := t.TempDir()
	hexKey := strings.Repeat("ab", 32)
	k, created, err := vault.LoadKey(hexKey, dir)
	if err != nil || created {
		t.Fatalf("env key: created=%v err=%v", created, err)
	}
	if _, err := os.Stat(filepath.Join(dir, vault.KeyFileName)); !os.IsNotExist(err) {
		t.Fatalf("key file written although the environment gave a key: %v", err)
	}
	raw, _ := hex.DecodeString(hexKey)
	if fmt.Sprint(k) == hexKey || strings.Contains(fmt.Sprintf("%v %+v", k, k), hexKey) || bytes.Contains([]byte(fmt.Sprintf("%#v", k.String())), raw) {
		t.Fatal("key material printed")
	}
	if _, _, err := vault.LoadKey("too-short", dir); err == nil {
		t.Fatal("short key: got nil error")
	}
}

func TestSealOpen(t *testing.T) {
	k, _, err := vault.LoadKey("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.Seal([]byte("xoxb-secret"), []byte("conn-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s.Ciphertext, []byte("xoxb-secret")) {
		t.Fatal("plaintext visible in ciphertext")
	}
	got, err := k.Open(s, []byte("conn-1"))
	if err != nil || string(got) != "xoxb-secret" {
		t.Fatalf("open: got %q, %v", got, err)
	}
	if _, err := k.Open(s, []byte("conn-2")); err == nil {
		t.Fatal("open with another owner: got nil error")
	}
	other, _, _ := vault.LoadKey("", t.TempDir())
	if _, err := other.Open(s, []byte("conn-1")); err != vault.ErrWrongKey {
		t.Fatalf("open with another key: got %v, want ErrWrongKey", err)
	}
}

func TestKeyringOpensWithOldKeys(t *testing.T) {
	dir := t.TempDir()
	old, _, err := vault.LoadKey("", dir)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := old.Seal([]byte("s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Rotate the file-based key: write the next key, then retire the old one.
	next, text, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.WriteKeyFile(filepath.Join(dir, vault.NextKeyFileName), text); err != nil {
		t.Fatal(err)
	}
	// Interrupted here: the current key is still the old one, and the next
	// key is loaded for opening.
	ring, _, err := vault.LoadKeyring("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if ring.Current.ID != old.ID || len(ring.OldIDs()) != 1 || ring.OldIDs()[0] != next.ID {
		t.Fatalf("mid-rotation keyring: current %s old %v", ring.Current.ID, ring.OldIDs())
	}
	if err := vault.RetireKeyFile(dir, old); err != nil {
		t.Fatal(err)
	}
	ring, _, err = vault.LoadKeyring("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if ring.Current.ID != next.ID {
		t.Fatalf("current after rotation: got %s, want %s", ring.Current.ID, next.ID)
	}
	if got, err := ring.Open(sealed, nil); err != nil || string(got) != "s" {
		t.Fatalf("open with retired key: %q, %v", got, err)
	}
	if _, err := vault.NewKeyring(next).Open(sealed, nil); err == nil {
		t.Fatal("a keyring without the old key opened its value")
	}
	// Old keys can come from the environment too.
	other, otherText, _ := vault.GenerateKey()
	ring, _, err = vault.LoadKeyring("", otherText, t.TempDir())
	if err != nil || len(ring.OldIDs()) != 1 || ring.OldIDs()[0] != other.ID {
		t.Fatalf("old key from environment: %v, %v", ring.OldIDs(), err)
	}
}
