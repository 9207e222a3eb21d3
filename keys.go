package cognitomcp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// SigningKey is a key the proxy signs or verifies its access tokens with.
// Set exactly one of Secret (HS256) and PrivateKey (ES256).
type SigningKey struct {
	// ID is the key's "kid": required, 1 to 64 printable ASCII bytes, unique
	// among KeyConfig.SigningKeys.
	ID string
	// Secret is an HS256 key of at least 32 bytes. It is never published.
	Secret []byte
	// PrivateKey is a P-256 key for ES256, used instead of Secret. Its public
	// half is published by the proxy's JWKS endpoint, so other services can
	// verify the proxy's tokens without sharing a secret.
	PrivateKey *ecdsa.PrivateKey
}

// EncryptionKey encrypts secrets at rest with AES-256-GCM.
type EncryptionKey struct {
	// ID names the key inside every ciphertext, so a value finds its key after
	// rotation: required, 1 to 32 printable ASCII bytes, unique among
	// KeyConfig.EncryptionKeys.
	ID string
	// Key is exactly 32 bytes.
	Key []byte
}

// KeyConfig holds the proxy's three independent keys: one signs access tokens,
// one encrypts secrets in the Store, one signs browser cookies. A key in one
// role is never used in another.
//
// The zero value is invalid: set MasterSecret, or all of SigningKeys,
// EncryptionKeys and CookieKeys. Every key list rotates the same way: the
// first key signs or encrypts, every key verifies or decrypts. With several
// replicas, first append the new key everywhere (each replica can then read
// what it will make), then move it first, keep the old one while values
// made with it live, then drop it; a replica that signed or sealed with a
// key others lack would make tokens and records they cannot read.
// The config's byte slices are copied; changing them later has no effect.
type KeyConfig struct {
	// MasterSecret is at least 32 random bytes (for example 32 bytes from
	// crypto/rand, kept in a secret manager). Each of SigningKeys,
	// EncryptionKeys and CookieKeys that is empty is derived from it with
	// HKDF-SHA256 under a distinct label, and so is its key ID: a new
	// MasterSecret yields new key IDs, and tokens, cookies and stored values
	// made under the old one stop verifying. Rotate without that break by
	// setting the explicit lists instead: Expanded gives the keys a
	// MasterSecret stands for, to keep beside the new one.
	MasterSecret []byte
	// SigningKeys sign and verify the proxy's access tokens (HS256 or ES256).
	// Default: one HS256 key derived from MasterSecret.
	SigningKeys []SigningKey
	// EncryptionKeys encrypt values at rest (AES-256-GCM). Default: one key
	// derived from MasterSecret.
	EncryptionKeys []EncryptionKey
	// CookieKeys sign cookies (HMAC-SHA256); each is at least 32 bytes and
	// distinct. Default: one key derived from MasterSecret.
	CookieKeys [][]byte
}

// LogValue makes a SigningKey safe to log with log/slog: its ID and
// algorithm, never a byte of the key.
func (k SigningKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ID", k.ID), slog.String("Alg", k.alg()))
}

// alg is the JWS algorithm the key signs with.
func (k SigningKey) alg() string {
	if k.PrivateKey != nil {
		return "ES256"
	}
	return "HS256"
}

// LogValue makes an EncryptionKey safe to log with log/slog: its ID, never
// a byte of the key.
func (k EncryptionKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ID", k.ID))
}

// LogValue makes a KeyConfig safe to log with log/slog (slog.Any("keys",
// cfg)): MasterSecret shows as "REDACTED" when set, SigningKeys and
// EncryptionKeys as their key IDs (signing keys with their algorithm),
// CookieKeys, which have no ID, as a count. Never a byte of a key.
func (c KeyConfig) LogValue() slog.Value {
	signing := make([]string, len(c.SigningKeys))
	for i, k := range c.SigningKeys {
		signing[i] = k.ID + " (" + k.alg() + ")"
	}
	encryption := make([]string, len(c.EncryptionKeys))
	for i, k := range c.EncryptionKeys {
		encryption[i] = k.ID
	}
	return slog.GroupValue(
		slog.String("MasterSecret", redactedIfSet(len(c.MasterSecret) > 0)),
		slog.Any("SigningKeys", signing),
		slog.Any("EncryptionKeys", encryption),
		slog.Int("CookieKeys", len(c.CookieKeys)),
	)
}

// redactedIfSet is what a log shows of a secret: "REDACTED" when it is set,
// "" when it is not.
func redactedIfSet(set bool) string {
	if set {
		return "REDACTED"
	}
	return ""
}

// Key sizes and limits.
const (
	minKeyBytes      = 32 // HMAC secrets and the master secret: 256 bits
	aesKeyBytes      = 32 // AES-256
	maxSigningKIDLen = 64
	maxSealKIDLen    = 32 // fits the one length byte of the sealed format
)

// HKDF labels: one per role, so the derived keys are independent.
const (
	labelSigning    = "cognitomcp signing v1"
	labelEncryption = "cognitomcp encryption v1"
	labelCookie     = "cognitomcp cookie v1"
)

// keyRing holds the proxy's three keyed primitives, built once from KeyConfig.
type keyRing struct {
	signer  *tokenSigner
	sealer  *sealer
	cookies *cookieSigner
}

// newKeyRing validates cfg, derives the keys it leaves empty and builds the
// three primitives. Errors name the offending field.
func newKeyRing(cfg KeyConfig) (*keyRing, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDerivedKeys()
	signer, err := newTokenSigner(cfg.SigningKeys)
	if err != nil {
		return nil, fmt.Errorf("cognitomcp: KeyConfig.SigningKeys: %w", err)
	}
	s, err := newSealer(cfg.EncryptionKeys)
	if err != nil {
		return nil, fmt.Errorf("cognitomcp: KeyConfig.EncryptionKeys: %w", err)
	}
	return &keyRing{signer: signer, sealer: s, cookies: newCookieSigner(cfg.CookieKeys)}, nil
}

// Expanded returns c with every key list it leaves empty derived from
// MasterSecret, as the proxy derives them (key IDs included), and no
// MasterSecret: the explicit lists that rotating one key of a deployment
// started with MasterSecret needs. To rotate the encryption key alone:
//
//	keys, err := cognitomcp.KeyConfig{MasterSecret: secret}.Expanded()
//	// handle err
//	keys.EncryptionKeys = append([]cognitomcp.EncryptionKey{newKey}, keys.EncryptionKeys...)
//
// Values sealed, tokens signed and cookies set under MasterSecret stay
// valid under the result. It returns the validation error NewProxy would.
func (c KeyConfig) Expanded() (KeyConfig, error) {
	if err := c.validate(); err != nil {
		return KeyConfig{}, err
	}
	c.SigningKeys = slices.Clone(c.SigningKeys)
	c.EncryptionKeys = slices.Clone(c.EncryptionKeys)
	c.CookieKeys = slices.Clone(c.CookieKeys)
	c = c.withDerivedKeys()
	c.MasterSecret = nil
	return c, nil
}

// withDerivedKeys fills the empty key lists from MasterSecret.
func (c KeyConfig) withDerivedKeys() KeyConfig {
	if len(c.SigningKeys) == 0 {
		k := deriveKey(c.MasterSecret, labelSigning, minKeyBytes)
		c.SigningKeys = []SigningKey{{ID: keyFingerprint(k), Secret: k}}
	}
	if len(c.EncryptionKeys) == 0 {
		k := deriveKey(c.MasterSecret, labelEncryption, aesKeyBytes)
		c.EncryptionKeys = []EncryptionKey{{ID: keyFingerprint(k), Key: k}}
	}
	if len(c.CookieKeys) == 0 {
		c.CookieKeys = [][]byte{deriveKey(c.MasterSecret, labelCookie, minKeyBytes)}
	}
	return c
}

// validate checks every field and says which one is wrong.
func (c KeyConfig) validate() error {
	explicit := len(c.SigningKeys) > 0 && len(c.EncryptionKeys) > 0 && len(c.CookieKeys) > 0
	switch {
	case len(c.MasterSecret) == 0 && !explicit:
		return keyConfigErr("MasterSecret", "required unless SigningKeys, EncryptionKeys and CookieKeys are all set")
	case len(c.MasterSecret) > 0 && len(c.MasterSecret) < minKeyBytes:
		return keyConfigErr("MasterSecret", "%d bytes, need at least %d", len(c.MasterSecret), minKeyBytes)
	}
	if err := validateSigningKeys(c.SigningKeys); err != nil {
		return err
	}
	if err := validateEncryptionKeys(c.EncryptionKeys); err != nil {
		return err
	}
	if err := validateCookieKeys(c.CookieKeys); err != nil {
		return err
	}
	return c.checkKeyReuse()
}

func validateSigningKeys(keys []SigningKey) error {
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		field := fmt.Sprintf("SigningKeys[%d]", i)
		if err := checkKeyID(field, k.ID, maxSigningKIDLen, seen); err != nil {
			return err
		}
		switch {
		case len(k.Secret) > 0 && k.PrivateKey != nil:
			return keyConfigErr(field, "set Secret or PrivateKey, not both")
		case k.PrivateKey != nil:
			if err := checkP256(k.PrivateKey); err != nil {
				return keyConfigErr(field+".PrivateKey", "%v", err)
			}
		case len(k.Secret) < minKeyBytes:
			return keyConfigErr(field+".Secret", "%d bytes, need at least %d (or set PrivateKey)", len(k.Secret), minKeyBytes)
		}
	}
	return nil
}

func checkP256(k *ecdsa.PrivateKey) error {
	if k.Curve != elliptic.P256() {
		return errors.New("curve must be P-256 (ES256)")
	}
	if _, err := k.Bytes(); err != nil {
		return fmt.Errorf("invalid key: %w", err)
	}
	if _, err := k.PublicKey.Bytes(); err != nil {
		return fmt.Errorf("invalid public key: %w", err)
	}
	return nil
}

func validateEncryptionKeys(keys []EncryptionKey) error {
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		field := fmt.Sprintf("EncryptionKeys[%d]", i)
		if err := checkKeyID(field, k.ID, maxSealKIDLen, seen); err != nil {
			return err
		}
		if len(k.Key) != aesKeyBytes {
			return keyConfigErr(field+".Key", "%d bytes, need exactly %d", len(k.Key), aesKeyBytes)
		}
	}
	return nil
}

func validateCookieKeys(keys [][]byte) error {
	for i, k := range keys {
		if len(k) < minKeyBytes {
			return keyConfigErr(fmt.Sprintf("CookieKeys[%d]", i), "%d bytes, need at least %d", len(k), minKeyBytes)
		}
		for j := range i {
			if bytes.Equal(k, keys[j]) || keyFingerprint(k) == keyFingerprint(keys[j]) {
				return keyConfigErr(fmt.Sprintf("CookieKeys[%d]", i), "same key (or key ID) as CookieKeys[%d]", j)
			}
		}
	}
	return nil
}

// checkKeyID requires a unique ID of 1..maxLen printable ASCII bytes: IDs
// travel in token headers, ciphertexts and cookies, where anything else would
// need escaping.
func checkKeyID(field, id string, maxLen int, seen map[string]bool) error {
	if id == "" || len(id) > maxLen {
		return keyConfigErr(field+".ID", "must be 1 to %d bytes, got %d", maxLen, len(id))
	}
	for i := range len(id) {
		if id[i] <= ' ' || id[i] > '~' {
			return keyConfigErr(field+".ID", "%q: only printable ASCII without spaces", id)
		}
	}
	if seen[id] {
		return keyConfigErr(field, "duplicate ID %q", id)
	}
	seen[id] = true
	return nil
}

// checkKeyReuse refuses one secret in two roles (design §7.6): a cookie key
// that is also the token key would let a cookie MAC stand in for a token MAC.
func (c KeyConfig) checkKeyReuse() error {
	type role struct {
		field string
		key   []byte
	}
	var roles []role
	if len(c.MasterSecret) > 0 {
		roles = append(roles, role{"MasterSecret", c.MasterSecret})
	}
	for i, k := range c.SigningKeys {
		if len(k.Secret) > 0 {
			roles = append(roles, role{fmt.Sprintf("SigningKeys[%d].Secret", i), k.Secret})
		}
	}
	for i, k := range c.EncryptionKeys {
		roles = append(roles, role{fmt.Sprintf("EncryptionKeys[%d].Key", i), k.Key})
	}
	for i, k := range c.CookieKeys {
		roles = append(roles, role{fmt.Sprintf("CookieKeys[%d]", i), k})
	}
	for i, a := range roles {
		for _, b := range roles[:i] {
			if keyFieldGroup(a.field) != keyFieldGroup(b.field) && bytes.Equal(a.key, b.key) {
				return keyConfigErr(a.field, "same key as %s; use independent keys", b.field)
			}
		}
	}
	return nil
}

// keyFieldGroup is the KeyConfig field a field path belongs to ("SigningKeys[1].Secret" → "SigningKeys").
func keyFieldGroup(field string) string {
	if i := strings.IndexAny(field, "[."); i >= 0 {
		return field[:i]
	}
	return field
}

func keyConfigErr(field, format string, args ...any) error {
	return fmt.Errorf("cognitomcp: KeyConfig.%s: %s", field, fmt.Sprintf(format, args...))
}

// deriveKey derives an n-byte key from master with HKDF-SHA256, using label
// as the HKDF info. It panics when n exceeds HKDF's limit (255*32 bytes), a
// programming error.
func deriveKey(master []byte, label string, n int) []byte {
	k, err := hkdf.Key(sha256.New, master, nil, label, n)
	if err != nil {
		panic("cognitomcp: deriveKey: " + err.Error())
	}
	return k
}

// keyFingerprint names a key by the first 8 hex digits of its SHA-256: stable
// for a key, different for a new key, and useless for recovering it.
func keyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// hashKey returns the hex SHA-256 of parts, each length-prefixed so that
// ("ab","c") and ("a","bc") differ. It makes store lookup keys from codes and
// tokens: they carry at least 128 random bits, so an unkeyed hash suffices
// and a store dump yields nothing a client could present.
func hashKey(parts ...string) string {
	var stack [256]byte // most inputs fit: no allocation besides the result
	buf := stack[:0]
	for _, p := range parts {
		buf = binary.AppendUvarint(buf, uint64(len(p)))
		buf = append(buf, p...)
	}
	sum := sha256.Sum256(buf)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// randomToken returns nBytes from crypto/rand, base64url-encoded without
// padding (32 bytes → 43 characters). It panics for nBytes < 16: every caller
// makes a secret (code, refresh token, CSRF token, transaction ID), and fewer
// than 128 bits is a programming error.
func randomToken(nBytes int) string {
	if nBytes < 16 {
		panic("cognitomcp: randomToken: need at least 16 bytes")
	}
	b := make([]byte, nBytes)
	_, _ = rand.Read(b) // never fails: since Go 1.24 a broken source crashes the program
	return base64.RawURLEncoding.EncodeToString(b)
}

// b64Strict is base64url without padding, strict about the unused low bits, so each
// byte string has exactly one accepted encoding.
var b64Strict = base64.RawURLEncoding.Strict()
