package cognitomcp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"strings"
	"sync"
)

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
	hdr, payload, sig, ok = cutJWS(raw)
	return hdr, payload, sig, ok && hdr != "" && payload != "" && sig != ""
}

// cutJWS cuts a compact JWS at its two dots, for both verifiers; ok is false
// unless raw has exactly two and nothing but base64url and dots (isJWSText).
func cutJWS(raw string) (hdr, payload, sig string, ok bool) {
	hdr, rest, ok1 := strings.Cut(raw, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	return hdr, payload, sig, ok1 && ok2 && strings.IndexByte(sig, '.') < 0 && isJWSText(raw)
}

// isJWSText reports whether s holds only what a compact JWS may: base64url
// without padding (RFC 7515 §2) and dots. Go's base64 decoders skip CR and
// LF, so without this check a token with line breaks in it would verify:
// two strings would be one token, and a token padded with line breaks would
// push its signature out of the end that the token cache hashes (tokenKey).
func isJWSText(s string) bool {
	var bad byte
	for i := 0; i < len(s); i++ {
		bad |= jwsTextReject[s[i]]
	}
	return bad == 0
}

// jwsTextReject is 1 for the bytes a compact JWS may not hold.
var jwsTextReject = rejectAllBut("-_.")

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
