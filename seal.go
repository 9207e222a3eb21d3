package cognitomcp

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
)

// Encryption at rest: AES-256-GCM with the key ID in the ciphertext.

// errDecrypt is every failure of sealer.Open; the wrapped variants say why in logs.
var (
	errDecrypt           = errors.New("cannot decrypt stored value")
	errDecryptFormat     = fmt.Errorf("%w: bad format", errDecrypt)
	errDecryptUnknownKey = fmt.Errorf("%w: unknown key ID (rotated out?)", errDecrypt)
	errDecryptAuth       = fmt.Errorf("%w: authentication failed", errDecrypt)
)

const sealVersion byte = 0x01

// sealer encrypts values at rest. Output: version (0x01) | len(kid) | kid |
// 12-byte random nonce | ciphertext | 16-byte tag; the header bytes and the
// caller's aad are authenticated. The first key seals; every key opens. Random
// nonces bound a key to about 2^32 seals; rotate long before. Safe for
// concurrent use.
type sealer struct {
	sealKey *aeadKey
	byID    map[string]*aeadKey
}

type aeadKey struct {
	header []byte // version | len(kid) | kid
	aead   cipher.AEAD
}

func newSealer(keys []EncryptionKey) (*sealer, error) {
	s := &sealer{byID: make(map[string]*aeadKey, len(keys))}
	for i, k := range keys {
		block, err := aes.NewCipher(k.Key) // copies the key
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, err
		}
		hdr := append([]byte{sealVersion, byte(len(k.ID))}, k.ID...)
		s.byID[k.ID] = &aeadKey{header: hdr, aead: aead}
		if i == 0 {
			s.sealKey = s.byID[k.ID]
		}
	}
	return s, nil
}

// Seal encrypts plaintext with the first key. aad (for example the store key)
// is authenticated but not stored: Open must be given the same aad, so a value
// copied under another store key fails to open.
func (s *sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	k := s.sealKey
	out := make([]byte, len(k.header), len(k.header)+len(plaintext)+k.aead.Overhead())
	copy(out, k.header)
	return k.aead.Seal(out, nil, plaintext, sealAAD(k.header, aad)), nil
}

// Open decrypts a value made by Seal with any configured key. Any damage,
// truncation, unknown key or wrong aad yields an error wrapping errDecrypt.
func (s *sealer) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 2 || sealed[0] != sealVersion {
		return nil, errDecryptFormat
	}
	end := 2 + int(sealed[1])
	if len(sealed) < end {
		return nil, errDecryptFormat
	}
	k, ok := s.byID[string(sealed[2:end])]
	if !ok {
		return nil, errDecryptUnknownKey
	}
	if len(sealed)-end < k.aead.Overhead() {
		return nil, errDecryptFormat
	}
	pt, err := k.aead.Open(nil, nil, sealed[end:], sealAAD(k.header, aad))
	if err != nil {
		return nil, errDecryptAuth
	}
	return pt, nil
}

// sealAAD is header || aad; the header is self-delimiting, so the split is unambiguous.
func sealAAD(header, aad []byte) []byte {
	return append(append(make([]byte, 0, len(header)+len(aad)), header...), aad...)
}
