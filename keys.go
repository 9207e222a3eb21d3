package cognitomcp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"
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
// first key signs or encrypts, every key verifies or decrypts, so prepend the
// new key, keep the old one while values made with it live, then drop it.
// The config's byte slices are copied; changing them later has no effect.
type KeyConfig struct {
	// MasterSecret is at least 32 random bytes (for example 32 bytes from
	// crypto/rand, kept in a secret manager). Each of SigningKeys,
	// EncryptionKeys and CookieKeys that is empty is derived from it with
	// HKDF-SHA256 under a distinct label, and so is its key ID: a new
	// MasterSecret yields new key IDs, and tokens, cookies and stored values
	// made under the old one stop verifying. Rotate without that break by
	// setting the explicit lists instead.
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

// ---------------------------------------------------------------------------
// Access tokens: compact JWS, HS256 or ES256.

// Token errors. The caller wraps them in its own ErrInvalidToken; their text
// is for logs, never for clients.
var (
	errMalformedJWT = errors.New("malformed token")
	errUnknownKID   = errors.New("token key ID unknown")
	errBadAlg       = errors.New("token algorithm not allowed for its key")
	errBadSignature = errors.New("token signature invalid")

	errJWTTooLarge = fmt.Errorf("%w: larger than %d bytes", errMalformedJWT, maxJWSLen)
	errJWTParts    = fmt.Errorf("%w: not three non-empty parts", errMalformedJWT)
	errJWTHeader   = fmt.Errorf("%w: header is not a JSON object", errMalformedJWT)
	errJWTCrit     = fmt.Errorf("%w: crit header not supported", errMalformedJWT)
	errJWTType     = fmt.Errorf("%w: typ is not at+jwt", errMalformedJWT)
	errJWTNoKID    = fmt.Errorf("%w: kid missing", errMalformedJWT)
	errJWTPayload  = fmt.Errorf("%w: payload is not a base64url JSON object", errMalformedJWT)
)

const (
	algHS256  = "HS256"
	algES256  = "ES256"
	jwtType   = "at+jwt" // RFC 9068 §2.1
	maxJWSLen = 16 << 10 // refuse before any decoding: our tokens are < 2 KiB
)

// tokenSigner signs and verifies the proxy's access tokens as compact JWS.
// The first key signs; every key verifies. Safe for concurrent use.
type tokenSigner struct {
	signKey  *jwsKey
	byKID    map[string]*jwsKey
	byHeader map[string]*jwsKey // encoded header as we emit it → key: the hot path parses no JSON
	jwks     []byte
}

// jwsKey is one signing key with its precomputed header.
type jwsKey struct {
	kid    string
	alg    string
	header string // base64url of {"alg":…,"kid":…,"typ":"at+jwt"}
	priv   *ecdsa.PrivateKey
	macs   sync.Pool // *macState keyed with the HS256 secret
}

// macState is a keyed HMAC-SHA256 with room for its sum, pooled so the hot
// path neither re-keys nor allocates.
type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newTokenSigner(keys []SigningKey) (*tokenSigner, error) {
	s := &tokenSigner{byKID: make(map[string]*jwsKey), byHeader: make(map[string]*jwsKey)}
	set := ecJWKSet{Keys: []ecJWK{}}
	for _, k := range keys {
		jk, err := newJWSKey(k)
		if err != nil {
			return nil, err
		}
		if jk.priv != nil {
			pub, err := publicECJWK(jk.kid, &jk.priv.PublicKey)
			if err != nil {
				return nil, err
			}
			set.Keys = append(set.Keys, pub)
		}
		s.byKID[jk.kid] = jk
		s.byHeader[jk.header] = jk
	}
	s.signKey = s.byKID[keys[0].ID]
	var err error
	s.jwks, err = json.Marshal(set)
	return s, err
}

func newJWSKey(k SigningKey) (*jwsKey, error) {
	jk := &jwsKey{kid: k.ID, alg: algHS256, priv: k.PrivateKey}
	if k.PrivateKey != nil {
		jk.alg = algES256
	} else {
		secret := bytes.Clone(k.Secret)
		jk.macs.New = func() any { return &macState{h: hmac.New(sha256.New, secret)} }
	}
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{jk.alg, jk.kid, jwtType})
	if err != nil {
		return nil, err
	}
	jk.header = base64.RawURLEncoding.EncodeToString(hdr)
	return jk, nil
}

// Sign encodes claims as JSON and returns them as a compact JWS signed with
// the first key, with header {"alg","kid","typ":"at+jwt"}. claims must encode
// to a JSON object. It sets no claims itself.
func (s *tokenSigner) Sign(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("cognitomcp: encode token claims: %w", err)
	}
	if len(payload) == 0 || payload[0] != '{' {
		return "", errors.New("cognitomcp: token claims must encode to a JSON object")
	}
	k := s.signKey
	enc := base64.RawURLEncoding
	tok := make([]byte, 0, len(k.header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(64))
	tok = append(tok, k.header...)
	tok = append(tok, '.')
	tok = enc.AppendEncode(tok, payload)
	tok, err = k.appendSignature(tok)
	if err != nil {
		return "", fmt.Errorf("cognitomcp: sign token: %w", err)
	}
	if len(tok) > maxJWSLen {
		return "", fmt.Errorf("cognitomcp: sign token: %d bytes, Verify refuses more than %d", len(tok), maxJWSLen)
	}
	return string(tok), nil
}

// appendSignature signs tok (the signing input) and appends "." and the
// base64url signature.
func (k *jwsKey) appendSignature(tok []byte) ([]byte, error) {
	var sig []byte
	if k.alg == algHS256 {
		m := k.macs.Get().(*macState)
		defer k.macs.Put(m)
		m.h.Reset()
		m.h.Write(tok)
		sig = m.h.Sum(m.sum[:0])
	} else {
		digest := sha256.Sum256(tok)
		r, s, err := ecdsa.Sign(rand.Reader, k.priv, digest[:])
		if err != nil {
			return nil, err
		}
		if s.Cmp(p256HalfOrder) > 0 {
			s.Sub(elliptic.P256().Params().N, s) // low-S form: Verify refuses the twin (r, N-s)
		}
		var rs [64]byte // JWS wants fixed-size r||s (RFC 7518 §3.4), not ASN.1
		r.FillBytes(rs[:32])
		s.FillBytes(rs[32:])
		sig = rs[:]
	}
	tok = append(tok, '.')
	return base64.RawURLEncoding.AppendEncode(tok, sig), nil
}

// jwsScratch holds the signing input and the decoded payload during Verify.
var jwsScratch = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Verify checks raw's signature and decodes its payload into dst. It is
// strict: at most 16 KiB, exactly three base64url parts, a header naming a
// known kid with that key's algorithm (never "none", never HS256 on an EC
// key), typ at+jwt, no crit; jku, x5u, jwk and x5c are ignored, so only our
// own keys count. Each signature has one accepted encoding (canonical
// base64url, low-S ES256), so a verified token string cannot be varied by a
// third party. It checks no claims: the caller checks iss, aud and exp.
func (s *tokenSigner) Verify(raw string, dst any) error {
	bp := jwsScratch.Get().(*[]byte)
	defer jwsScratch.Put(bp)
	body, err := s.verifiedPayload(raw, bp)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("%w: payload: %v", errMalformedJWT, err)
	}
	return nil
}

// verifiedPayload checks everything but the payload's JSON and returns the
// decoded payload, which lives in *scratch. Working on a copy of raw in a
// pooled buffer saves the allocations that HMAC and base64 (which want
// []byte) would otherwise cost on every request.
func (s *tokenSigner) verifiedPayload(raw string, scratch *[]byte) ([]byte, error) {
	if len(raw) > maxJWSLen {
		return nil, errJWTTooLarge
	}
	hdr, payload, _, ok := splitJWS(raw)
	if !ok {
		return nil, errJWTParts
	}
	k, ok := s.byHeader[hdr]
	if !ok {
		var err error
		if k, err = s.keyFromHeader(hdr); err != nil {
			return nil, err
		}
	}
	if need := len(raw) + base64.RawURLEncoding.DecodedLen(len(payload)); cap(*scratch) < need {
		*scratch = make([]byte, 0, need)
	}
	buf := append((*scratch)[:0], raw...)
	sigAt := len(hdr) + 1 + len(payload)
	if !k.verify(buf[:sigAt], buf[sigAt+1:]) {
		return nil, errBadSignature
	}
	body, err := b64Strict.AppendDecode(buf[len(buf):], buf[len(hdr)+1:sigAt])
	if err != nil || len(body) == 0 || body[0] != '{' {
		return nil, errJWTPayload
	}
	return body, nil
}

// splitJWS cuts raw into its three parts; each must be non-empty.
func splitJWS(raw string) (hdr, payload, sig string, ok bool) {
	hdr, rest, ok1 := strings.Cut(raw, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	ok = ok1 && ok2 && hdr != "" && payload != "" && sig != "" && strings.IndexByte(sig, '.') < 0
	return hdr, payload, sig, ok
}

// keyFromHeader parses a header we did not emit byte for byte. Keys are
// matched exactly (encoding/json would match struct fields case-insensitively).
func (s *tokenSigner) keyFromHeader(hdr string) (*jwsKey, error) {
	js, err := b64Strict.DecodeString(hdr)
	if err != nil || len(js) == 0 || js[0] != '{' {
		return nil, errJWTHeader
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(js, &h); err != nil {
		return nil, errJWTHeader
	}
	if _, ok := h["crit"]; ok {
		return nil, errJWTCrit // RFC 7515 §4.1.11: we understand no extension
	}
	alg, _ := headerString(h["alg"])
	if alg != algHS256 && alg != algES256 {
		return nil, errBadAlg
	}
	if typ, _ := headerString(h["typ"]); !strings.EqualFold(typ, jwtType) && !strings.EqualFold(typ, "application/"+jwtType) {
		return nil, errJWTType
	}
	kid, ok := headerString(h["kid"])
	if !ok {
		return nil, errJWTNoKID
	}
	k, ok := s.byKID[kid]
	if !ok {
		return nil, errUnknownKID
	}
	if alg != k.alg {
		return nil, errBadAlg
	}
	return k, nil
}

func headerString(v json.RawMessage) (string, bool) {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// verify checks the encoded signature sig over input.
func (k *jwsKey) verify(input, sig []byte) bool {
	var buf [64]byte
	want := 64
	if k.alg == algHS256 {
		want = sha256.Size
	}
	// Exact encoded length and decoded size: rejects the CR/LF the decoder skips.
	if len(sig) != base64.RawURLEncoding.EncodedLen(want) {
		return false
	}
	n, err := b64Strict.Decode(buf[:], sig)
	if err != nil || n != want {
		return false
	}
	if k.alg == algHS256 {
		m := k.macs.Get().(*macState)
		defer k.macs.Put(m)
		m.h.Reset()
		m.h.Write(input)
		return hmac.Equal(m.h.Sum(m.sum[:0]), buf[:n])
	}
	digest := sha256.Sum256(input)
	r := new(big.Int).SetBytes(buf[:32])
	s := new(big.Int).SetBytes(buf[32:64])
	if s.Cmp(p256HalfOrder) > 0 {
		return false // high-S: a malleated copy of a valid signature
	}
	return ecdsa.Verify(&k.priv.PublicKey, digest[:], r, s)
}

// p256HalfOrder is N/2: ES256 signatures are made and accepted with s ≤ N/2 only,
// so nobody but the signer can derive a second valid token string from a token.
var p256HalfOrder = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// PublicJWKS returns the JWK Set of the ES256 keys, for the proxy's JWKS
// endpoint: {"keys":[…]}, empty when every key is HS256. Secrets never appear.
func (s *tokenSigner) PublicJWKS() []byte {
	return bytes.Clone(s.jwks)
}

type ecJWKSet struct {
	Keys []ecJWK `json:"keys"`
}

type ecJWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

func publicECJWK(kid string, pub *ecdsa.PublicKey) (ecJWK, error) {
	pt, err := pub.Bytes() // 0x04 || X || Y, 32 bytes each on P-256
	if err != nil {
		return ecJWK{}, err
	}
	enc := base64.RawURLEncoding
	return ecJWK{Kty: "EC", Crv: "P-256", X: enc.EncodeToString(pt[1:33]), Y: enc.EncodeToString(pt[33:]),
		Kid: kid, Alg: algES256, Use: "sig"}, nil
}

// ---------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------
// Cookies: HMAC-SHA256 over name, value and expiry, with the key ID inside.

var (
	errCookieInvalid = errors.New("cookie signature invalid")
	errCookieExpired = errors.New("cookie expired")
)

const maxSignedCookieLen = 8 << 10 // browsers keep at most 4 KiB

// cookieSigner signs cookie values so the browser cannot alter or swap them.
// Signed form: base64url(value) "." expiry-unix-seconds "." kid "." base64url(mac),
// where mac = HMAC-SHA256(key, len(name) | name | the text before the last dot).
// The first key signs; every key verifies. Safe for concurrent use.
type cookieSigner struct {
	keys []*cookieKey
}

type cookieKey struct {
	id   string // keyFingerprint of the key
	macs sync.Pool
}

func newCookieSigner(keys [][]byte) *cookieSigner {
	c := &cookieSigner{}
	for _, k := range keys {
		secret := bytes.Clone(k)
		ck := &cookieKey{id: keyFingerprint(secret)}
		ck.macs.New = func() any { return &macState{h: hmac.New(sha256.New, secret)} }
		c.keys = append(c.keys, ck)
	}
	return c
}

// Sign returns value signed for the cookie called name, valid until expires
// (rounded down to the second).
func (c *cookieSigner) Sign(name, value string, expires time.Time) string {
	k := c.keys[0]
	b := make([]byte, 0, base64.RawURLEncoding.EncodedLen(len(value))+len(k.id)+80)
	b = base64.RawURLEncoding.AppendEncode(b, []byte(value))
	b = append(b, '.')
	b = strconv.AppendInt(b, expires.Unix(), 10)
	b = append(b, '.')
	b = append(b, k.id...)
	b = k.appendMAC(b, name, b) // hashes b before appending to it

	return string(b)
}

// Verify returns the value of a cookie made by Sign for the same name, if its
// MAC holds under any key (compared in constant time) and now is before its
// expiry.
func (c *cookieSigner) Verify(name, signed string, now time.Time) (string, error) {
	if len(signed) > maxSignedCookieLen {
		return "", errCookieInvalid
	}
	i := strings.LastIndexByte(signed, '.')
	if i < 0 {
		return "", errCookieInvalid
	}
	body, mac := signed[:i], signed[i+1:]
	value, rest, ok1 := strings.Cut(body, ".")
	expiry, kid, ok2 := strings.Cut(rest, ".")
	k := c.key(kid)
	if !ok1 || !ok2 || k == nil {
		return "", errCookieInvalid
	}
	want := k.appendMAC(nil, name, []byte(body))
	if !hmac.Equal([]byte(mac), want[1:]) { // want starts with the "."
		return "", errCookieInvalid
	}
	// Authentic from here: we wrote these fields.
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil {
		return "", errCookieInvalid
	}
	if !now.Before(time.Unix(exp, 0)) {
		return "", errCookieExpired
	}
	v, err := b64Strict.DecodeString(value)
	if err != nil {
		return "", errCookieInvalid
	}
	return string(v), nil
}

func (c *cookieSigner) key(id string) *cookieKey {
	for _, k := range c.keys {
		if k.id == id {
			return k
		}
	}
	return nil
}

// appendMAC appends "." and the base64url MAC of name and body to dst.
func (k *cookieKey) appendMAC(dst []byte, name string, body []byte) []byte {
	m := k.macs.Get().(*macState)
	defer k.macs.Put(m)
	m.h.Reset()
	var n [binary.MaxVarintLen64]byte
	m.h.Write(binary.AppendUvarint(n[:0], uint64(len(name))))
	m.h.Write([]byte(name))
	m.h.Write(body)
	dst = append(dst, '.')
	return base64.RawURLEncoding.AppendEncode(dst, m.h.Sum(m.sum[:0]))
}
