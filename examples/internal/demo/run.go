package demo

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cognitomcp/cognitomcp"
)

// MCPConfig is what Main builds an example's MCP handler with.
type MCPConfig struct {
	// Logger is the server's logger.
	Logger *slog.Logger
	// Stateless asks for a handler whose requests need no MCP session kept
	// in this process, so that any replica can answer any request. Main sets
	// it when REDIS_URL is set: replicas share the proxy's state through
	// Redis, but an MCP SDK keeps its sessions in the memory of the process
	// that opened them, and a load balancer without sticky sessions sends a
	// session's next request to any replica. The cost is what needs a
	// session: server-to-client requests (sampling, elicitation) and
	// notifications outside a request, which the examples do not use.
	Stateless bool
}

// Main runs an example server named name ("examples/server") whose MCP
// handler newMCP builds: it reads the environment, serves until SIGINT or
// SIGTERM and returns. On bad configuration it prints one line naming the
// variable and exits 2; on any other failure it exits 1. With LOG_FORMAT=json
// a failure once the configuration is read is a JSON log line instead.
func Main(name string, newMCP func(MCPConfig) http.Handler) {
	cfg, err := loadConfig(os.Getenv)
	var logger *slog.Logger
	if err == nil {
		logger = newLogger(cfg, os.Stderr)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		context.AfterFunc(ctx, stop) // a second signal kills at once
		err = run(ctx, cfg, newMCP(MCPConfig{Logger: logger, Stateless: cfg.RedisURL != ""}), os.Stdout, logger)
	}
	if err != nil {
		if logger != nil && cfg.LogJSON {
			logger.Error(name+" exiting", "err", err.Error()) // a JSON line like every other
		} else {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
		if errors.As(err, new(configError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// newLogger returns the logger LOG_LEVEL and LOG_FORMAT ask for, writing to
// w, and makes it slog's default and go-redis's logger, so that every line
// the process logs has one format.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogJSON {
		h = slog.NewJSONHandler(w, opts)
	}
	logger := slog.New(h)
	slog.SetDefault(logger)
	redis.SetLogger(redisLogger{logger})
	return logger
}

// redisLogger is go-redis's logger (redis.SetLogger) on slog. go-redis logs
// only trouble and topology changes (a Sentinel failing, a new master), so
// its lines are warnings.
type redisLogger struct{ logger *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.Log(ctx, slog.LevelWarn, strings.TrimSpace(fmt.Sprintf(format, v...)), "logger", "go-redis")
}

// run serves mcp behind a cognitomcp.Proxy as cfg says, printing the
// connection instructions and then "listening on <base URL>" to stdout once
// the listener is bound, until ctx ends; then it shuts down gracefully and
// returns nil.
func run(ctx context.Context, cfg config, mcp http.Handler, stdout io.Writer, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ADDR: %w", err)
	}
	defer ln.Close()
	base := cfg.BaseURL
	if base == "" {
		base = followURL(cfg.Addr, ln.Addr())
	}

	pcfg := cognitomcp.ProxyConfig{
		UserPoolID: cfg.UserPoolID, Region: cfg.Region, IssuerURL: cfg.IssuerURL, DomainURL: cfg.DomainURL,
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Scopes: cfg.Scopes,
		BaseURL: base, AllowedRedirectURIs: cfg.AllowedRedirectURIs, AllowedOrigins: cfg.AllowedOrigins,
		Logger: logger,
	}
	if cfg.ClientIPHeader != "" {
		pcfg.ClientIP = cognitomcp.ForwardedClientIP(cfg.ClientIPHeader, cfg.ClientIPHops)
	} else if strings.HasPrefix(base, "https://") {
		logger.Warn("CLIENT_IP_HEADER unset behind a TLS proxy: rate limits count the proxy's address, for every client at once; set it to the header your proxy reports the client's address in (X-Forwarded-For)")
	}
	generated, err := setKeys(cfg, &pcfg)
	if err != nil {
		return err
	}
	closeStore, err := openStore(ctx, cfg, &pcfg)
	if err != nil {
		return err
	}
	defer closeStore()
	var fc *fakeCognito
	if cfg.fake() {
		fc = startFakeCognito(cfg, base, &pcfg)
		defer fc.pool.Close()
	}
	proxy, err := cognitomcp.NewProxy(ctx, pcfg)
	if err != nil {
		return withEnvHint(err)
	}

	if generated {
		msg := "JWT_SIGNING_KEY/STORAGE_ENCRYPTION_KEY (or COGNITOMCP_MASTER_SECRET) unset: keys generated at startup, so tokens and sign-ins die with the process"
		if cfg.RedisURL != "" {
			msg += ", and replicas sharing REDIS_URL refuse each other's"
		}
		logger.Warn(msg)
	}
	if cfg.RedisURL == "" {
		logger.Info("REDIS_URL unset: state is kept in memory, for one replica only")
	} else {
		logger.Info("REDIS_URL set: MCP requests need no session in this process (stateless), so any replica can answer them")
	}
	if fc != nil {
		fc.print(stdout, cfg.AutoLogin)
	}
	printConnect(stdout, proxy.Resource())
	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	probes := &probes{next: endOnShutdown(streams, proxy.Handler(http.MaxBytesHandler(mcp, maxMCPBody)))}
	srv := newServer(probes, requestReadTimeout, logger)
	srv.RegisterOnShutdown(endStreams)
	fmt.Fprintf(stdout, "listening on %s\n", base)
	logger.Info("serving", "mcp", proxy.Resource(), "addr", ln.Addr().String())
	return serve(ctx, srv, ln, shutdown{probes: probes, delay: cfg.ShutdownDelay, timeout: cfg.ShutdownTimeout,
		after: time.After}, logger)
}

// shutdown is how serve stops once its context ends.
type shutdown struct {
	probes         *probes                              // whose /readyz fails from the start
	delay, timeout time.Duration                        // SHUTDOWN_DELAY, SHUTDOWN_TIMEOUT
	after          func(time.Duration) <-chan time.Time // time.After; a test's own clock
}

// maxMCPBody bounds the body of an MCP request: the SDKs read a message
// whole, and a signed-in client could otherwise send gigabytes.
const maxMCPBody = 4 << 20

// requestReadTimeout bounds the reading of a request, body included: a client
// that trickles its body (or its headers) holds a connection and a
// goroutine no longer. It does not cut MCP event streams: net/http lifts
// the read deadline once the body is read (TestServerReadTimeout).
const requestReadTimeout = 30 * time.Second

// newServer is the program's http.Server: ReadTimeout and ReadHeaderTimeout
// for slow clients, IdleTimeout for idle connections, headers of at most
// 64 KiB, and no WriteTimeout, which would cut MCP event streams.
func newServer(h http.Handler, readTimeout time.Duration, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       readTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// serve runs srv on ln until ctx ends, then drains: /readyz answers 503 at
// once while everything else is served for sd.delay more, time for a load
// balancer to see it and stop sending requests here; then srv shuts down,
// giving in-flight requests sd.timeout; streams still open then are cut.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, sd shutdown, logger *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sd.probes.draining.Store(true)
	logger.Info("shutting down: /readyz answers 503", "delay", sd.delay.String(), "timeout", sd.timeout.String())
	if sd.delay > 0 {
		select {
		case err := <-errc:
			return err
		case <-sd.after(sd.delay):
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), sd.timeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutdown timed out; closing open streams", "err", err)
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// endOnShutdown ends GET requests, which MCP clients hold open as event
// streams for server notifications, when streams ends, so that they do not
// hold up a graceful shutdown; POSTs (tool calls) run to completion.
func endOnShutdown(streams context.Context, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			defer context.AfterFunc(streams, cancel)()
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	})
}

// setKeys sets pcfg.Keys from the environment. COGNITOMCP_MASTER_SECRET
// stands for every key the other variables leave unset. Without it, the
// cookie key is derived from JWT_SIGNING_KEY and STORAGE_ENCRYPTION_KEY when
// both are set, so that fixed keys mean fixed cookies: replicas sharing
// REDIS_URL, and the same replica after a restart, accept each other's
// sign-in and consent cookies. Whatever is still missing is derived from a
// master secret generated now; generated reports that, as the keys then die
// with the process.
//
// Each list keeps its order, the first key signing or sealing; so does the
// list of cookie keys, one for each pair of a signing and an encryption key,
// the pair of the two first keys first. A rotation that adds a key after
// the old one, then moves it first, then drops the old one, thus rotates
// the cookie key too, and each deploy reads what the one before it made.
func setKeys(cfg config, pcfg *cognitomcp.ProxyConfig) (generated bool, err error) {
	keys := cognitomcp.KeyConfig{MasterSecret: cfg.MasterSecret}
	for _, k := range cfg.SigningKeys {
		keys.SigningKeys = append(keys.SigningKeys, cognitomcp.SigningKey{ID: keyID("sig", k), Secret: k})
	}
	for _, k := range cfg.EncryptionKeys {
		keys.EncryptionKeys = append(keys.EncryptionKeys, cognitomcp.EncryptionKey{ID: keyID("enc", k), Key: k})
	}
	if keys.MasterSecret == nil && cfg.SigningKeys != nil && cfg.EncryptionKeys != nil {
		for _, sk := range cfg.SigningKeys {
			for _, ek := range cfg.EncryptionKeys {
				cookieKey, err := cookieKeyOf(sk, ek)
				if err != nil {
					return false, err
				}
				keys.CookieKeys = append(keys.CookieKeys, cookieKey)
			}
		}
	}
	if keys.MasterSecret == nil && keys.CookieKeys == nil {
		keys.MasterSecret = make([]byte, 32)
		if _, err := rand.Read(keys.MasterSecret); err != nil {
			return false, err
		}
		generated = true
	}
	pcfg.Keys = keys
	return generated, nil
}

// cookieKeyOf derives the cookie key from the signing and encryption keys
// with HKDF-SHA256 under the example's own label, so it is fixed when they
// are and differs from both. The encryption key, always 32 bytes, comes
// first, so no two pairs of keys concatenate alike.
func cookieKeyOf(signingKey, encryptionKey []byte) ([]byte, error) {
	secret := append(append([]byte{}, encryptionKey...), signingKey...)
	return hkdf.Key(sha256.New, secret, nil, "cognitomcp example cookie v1", 32)
}

// keyID names a key by its hash, so a new key gets a new kid.
func keyID(prefix string, key []byte) string {
	sum := sha256.Sum256(key)
	return prefix + "-" + hex.EncodeToString(sum[:6])
}

// openStore sets pcfg.Store: Redis when REDIS_URL is set (through its
// Sentinels when it names them), else the proxy's default memory store.
func openStore(ctx context.Context, cfg config, pcfg *cognitomcp.ProxyConfig) (closeStore func(), err error) {
	if cfg.RedisURL == "" {
		return func() {}, nil
	}
	opts, failover, err := parseRedisURL(cfg.RedisURL) // checked by loadConfig
	if err != nil {
		return nil, configError(redisURLError)
	}
	var client redis.UniversalClient
	var server string // for errors: never the URL, which may hold a password
	if failover != nil {
		client = redis.NewFailoverClient(failover)
		server = fmt.Sprintf("master %q via Sentinels %s", failover.MasterName, strings.Join(failover.SentinelAddrs, ","))
	} else {
		client = redis.NewClient(opts)
		server = opts.Addr
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("REDIS_URL: ping %s: %w", server, err)
	}
	pcfg.Store = cognitomcp.NewRedisStore(client, cognitomcp.RedisStoreOptions{})
	return func() { _ = client.Close() }, nil
}

// configField finds the config field a cognitomcp constructor error names.
var configField = regexp.MustCompile(`(?:Proxy|Verifier)Config\.(\w+)`)

// envOfField maps the ProxyConfig fields the environment sets to their variables.
var envOfField = map[string]string{
	"UserPoolID": "COGNITO_USER_POOL_ID", "Region": "COGNITO_REGION", "IssuerURL": "COGNITO_ISSUER_URL",
	"DomainURL": "COGNITO_DOMAIN", "ClientID": "COGNITO_CLIENT_ID", "ClientIDs": "COGNITO_CLIENT_ID",
	"Scopes": "COGNITO_SCOPES", "BaseURL": "BASE_URL", "AllowedRedirectURIs": "ALLOWED_REDIRECT_URIS",
	"AllowedOrigins": "ALLOWED_ORIGINS", "Keys": "JWT_SIGNING_KEY/STORAGE_ENCRYPTION_KEY/COGNITOMCP_MASTER_SECRET",
}

// withEnvHint turns a NewProxy error about a field the environment sets
// into a configuration error naming the variable.
func withEnvHint(err error) error {
	if m := configField.FindStringSubmatch(err.Error()); m != nil {
		if name, ok := envOfField[m[1]]; ok {
			return configErrorf("%s: %v", name, err)
		}
	}
	return err
}
