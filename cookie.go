package cognitomcp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
)

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
