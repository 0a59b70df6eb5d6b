package account

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// argon2id parameters, stored with every hash so they can change later
// without invalidating existing passwords. 19 MiB, 2 passes, 1 lane is the
// OWASP baseline for argon2id.
type argonParams struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	keyLen  uint32
}

var defaultArgon = argonParams{memory: 19 * 1024, time: 2, threads: 1, keyLen: 32}

// UseLightPasswordHashing makes the hashes this process writes from now on
// cheap (64 KiB, one pass). Test binaries call it before any test runs:
// under the race detector the production cost is a large share of every
// test that signs someone in. Each hash carries its own parameters, so
// hashes written before are still checked with theirs. The hash an
// unknown email is checked against follows, so both cost the same.
func UseLightPasswordHashing() {
	defaultArgon = argonParams{memory: 64, time: 1, threads: 1, keyLen: 32}
	dummyHash = newDummyHash()
}

const minPasswordLen = 10

// validatePassword applies the password policy to a person's chosen password.
func validatePassword(pw string) error {
	if len(pw) < minPasswordLen {
		return invalid("password", fmt.Sprintf("Password must be at least %d characters", minPasswordLen))
	}
	if len(pw) > 256 {
		return invalid("password", "Password must be at most 256 characters")
	}
	return nil
}

// hashPassword returns the PHC string form of an argon2id hash.
func hashPassword(pw string) (string, error) {
	p := defaultArgon
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, p.keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

var errBadHash = errors.New("malformed password hash")

// checkPassword reports whether pw matches the PHC-encoded hash.
func checkPassword(encoded, pw string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	var p argonParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return false, errBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// GeneratePassword returns a random password for people who did not choose
// one (the demo owner, an admin reset): 26 base32 characters, 130 bits.
func GeneratePassword() string { return rand.Text() }
