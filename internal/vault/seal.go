package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// Sealed is an encrypted secret and the id of the key that sealed it.
type Sealed struct {
	KeyID      string
	Ciphertext []byte // nonce || AES-256-GCM ciphertext and tag
}

// ErrWrongKey means a value was sealed with a key this process does not have.
var ErrWrongKey = errors.New("vault: sealed with a different key")

// Seal encrypts plaintext. aad binds the ciphertext to its owner (for
// example a connection id), so a sealed value copied onto another row
// cannot be opened there.
func (k Key) Seal(plaintext, aad []byte) (Sealed, error) {
	gcm, err := k.gcm()
	if err != nil {
		return Sealed{}, err
	}
	nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(plaintext)+gcm.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("vault: nonce: %w", err)
	}
	return Sealed{KeyID: k.ID, Ciphertext: gcm.Seal(nonce, nonce, plaintext, aad)}, nil
}

// Open decrypts a sealed value.
func (k Key) Open(s Sealed, aad []byte) ([]byte, error) {
	if s.KeyID != k.ID {
		return nil, ErrWrongKey
	}
	gcm, err := k.gcm()
	if err != nil {
		return nil, err
	}
	if len(s.Ciphertext) < gcm.NonceSize() {
		return nil, errors.New("vault: ciphertext too short")
	}
	nonce, ct := s.Ciphertext[:gcm.NonceSize()], s.Ciphertext[gcm.NonceSize():]
	pt, err := gcm.Open(nil, nonce, ct, aad)
	if err != nil {
		return nil, errors.New("vault: cannot decrypt (tampered, or wrong owner)")
	}
	return pt, nil
}

func (k Key) gcm() (cipher.AEAD, error) {
	if len(k.bytes) != 32 {
		return nil, errors.New("vault: no key loaded")
	}
	block, err := aes.NewCipher(k.bytes)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return cipher.NewGCM(block)
}
