package cognitotest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"sync"
)

// signingKey is one RSA key of the pool with its kid.
type signingKey struct {
	kid string
	key *rsa.PrivateKey
}

// keyring holds the current ID and access keys and, after RotateKeys, the
// previous pair.
type keyring struct {
	id, access signingKey
	old        []signingKey
}

func newKeyring() keyring {
	id, access := newKeyPair()
	return keyring{id: id, access: access}
}

// newKeyPair generates the ID and access keys in parallel; RSA key
// generation dominates the cost of NewUserPool.
func newKeyPair() (id, access signingKey) {
	var wg sync.WaitGroup
	wg.Go(func() { id = newSigningKey() })
	access = newSigningKey()
	wg.Wait()
	return id, access
}

func newSigningKey() signingKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("cognitotest: generate RSA key: " + err.Error())
	}
	// Cognito kids look like base64 of a SHA-256 digest.
	kid := make([]byte, 32)
	_, _ = rand.Read(kid)
	return signingKey{kid: base64.StdEncoding.EncodeToString(kid), key: key}
}

// all returns the published keys: current pair first, then the old ones.
func (k keyring) all() []signingKey {
	return append([]signingKey{k.id, k.access}, k.old...)
}

// RotateKeys gives the pool new ID and access keys with new kids. New tokens
// are signed with them; the JWKS publishes them and still the previous
// pair, so earlier tokens verify until DropOldKeys.
func (p *UserPool) RotateKeys() {
	id, access := newKeyPair()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys.old = []signingKey{p.keys.id, p.keys.access}
	p.keys.id, p.keys.access = id, access
}

// DropOldKeys removes the previous key pair from the JWKS.
func (p *UserPool) DropOldKeys() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys.old = nil
}

// AccessKeyID returns the kid that signs new access tokens.
func (p *UserPool) AccessKeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys.access.kid
}

// IDKeyID returns the kid that signs new ID tokens.
func (p *UserPool) IDKeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys.id.kid
}

// AccessPublicKey returns the public key that verifies new access tokens,
// for negative tests such as HS256 signed with the public key as secret.
func (p *UserPool) AccessPublicKey() *rsa.PublicKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &p.keys.access.key.PublicKey
}

// jwk is one entry of the JWKS, in Cognito's field set.
type jwk struct {
	Alg string `json:"alg"`
	E   string `json:"e"`
	Kid string `json:"kid"`
	Kty string `json:"kty"`
	N   string `json:"n"`
	Use string `json:"use"`
}

// jwks returns the published key set.
func (p *UserPool) jwks() map[string][]jwk {
	p.mu.Lock()
	keys := p.keys.all()
	p.mu.Unlock()
	set := make([]jwk, 0, len(keys))
	for _, k := range keys {
		pub := k.key.PublicKey
		set = append(set, jwk{
			Alg: "RS256",
			E:   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
			Kid: k.kid,
			Kty: "RSA",
			N:   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			Use: "sig",
		})
	}
	return map[string][]jwk{"keys": set}
}

// publicKey finds a published key by kid.
func (p *UserPool) publicKey(kid string) (*rsa.PublicKey, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.keys.all() {
		if k.kid == kid {
			return &k.key.PublicKey, true
		}
	}
	return nil, false
}
