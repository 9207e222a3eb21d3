// Package testredis runs a real redis-server for tests, the way
// net/http/httptest runs an HTTP server: Start one, use its Addr or Client,
// and it is killed when the test ends.
//
// When redis-server is not installed the test is skipped with a message
// saying what to install, unless COGNITOMCP_FULL=1, which makes it fail.
package testredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cognitomcp/cognitomcp/internal/syncbuf"
)

// startTimeout bounds how long Start and Restart wait for PING to answer.
const startTimeout = 10 * time.Second

// StartOptions configures StartWithOptions. The zero value is what Start uses.
type StartOptions struct {
	// Persist turns on the append-only file with appendfsync always in the
	// server's temp dir, so every acknowledged write survives Stop and
	// Restart. Default false: no persistence (--save "" --appendonly no), and
	// Restart starts empty.
	Persist bool
	// Cluster starts the server in cluster mode as a one-node cluster that
	// owns all 16384 slots; use ClusterClient. Default false.
	Cluster bool
}

// Server is a redis-server child process listening on 127.0.0.1.
type Server struct {
	// Addr is host:port, e.g. "127.0.0.1:40123". It does not change on Restart.
	Addr string
	// Dir is the server's working directory, a fresh temp dir.
	Dir string

	bin  string
	opts StartOptions

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *syncBuffer   // the server's log
}

// Start launches redis-server on a free 127.0.0.1 port with no persistence,
// waits until it answers PING, and registers Stop with t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWithOptions(t, StartOptions{})
}

// StartWithOptions is Start configured by opts.
func StartWithOptions(t testing.TB, opts StartOptions) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("COGNITOMCP_FULL") == "1" {
			t.Fatalf("testredis: redis-server not found in PATH and COGNITOMCP_FULL=1; install it: apt-get install redis-server")
		}
		t.Skip("testredis: redis-server not found in PATH; install it (apt-get install redis-server) to run this test")
	}
	s := &Server{Dir: t.TempDir(), bin: bin, opts: opts}
	t.Cleanup(s.Stop)
	// A free port can be taken between probe and bind; try a few.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testredis: find a free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("testredis: %v", lastErr)
	return nil
}

// Client returns a new client for the server, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ClusterClient returns a new cluster client for a server started with
// StartOptions.Cluster, closed when t ends.
func (s *Server) ClusterClient(t testing.TB) *redis.ClusterClient {
	t.Helper()
	if !s.opts.Cluster {
		t.Fatalf("testredis: ClusterClient needs StartOptions.Cluster")
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{s.Addr}})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server with SIGKILL, as a crash would, and waits for it to
// exit. Writes not yet persisted are lost. Stop is safe to call more than
// once and on a stopped server.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port and dir (stopping it
// first if it is running) and waits until it answers PING. With
// StartOptions.Persist it reloads every acknowledged write; without, it
// starts empty.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("testredis: restart: %v", err)
	}
}

// Log returns what the server has written to its log so far.
func (s *Server) Log() string { return s.out.String() }

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := []string{
		"--port", port, "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--daemonize", "no", "--logfile", "", "--databases", "1",
	}
	if s.opts.Persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.opts.Cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-announce-ip", "127.0.0.1")
	}
	if s.out == nil {
		s.out = &syncBuffer{}
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	err := waitPing(s.Addr, done)
	if err == nil && s.opts.Cluster {
		err = claimSlots(s.Addr, done)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		<-done
		s.cmd = nil
		return fmt.Errorf("redis-server on %s: %w; log:\n%s", s.Addr, err, s.out.String())
	}
	return nil
}

// waitPing polls PING until it answers, the process exits, or startTimeout.
func waitPing(addr string, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, PoolSize: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before answering PING")
		case <-ctx.Done():
			return fmt.Errorf("no PING answer within %v: %w", startTimeout, err)
		case <-tick.C:
		}
	}
}

// claimSlots gives the one node every slot (kept in nodes.conf across
// restarts) and polls CLUSTER INFO until the cluster is ok.
func claimSlots(addr string, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil && !strings.Contains(err.Error(), "busy") {
		return fmt.Errorf("CLUSTER ADDSLOTSRANGE: %w", err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before the cluster was ok")
		case <-ctx.Done():
			return fmt.Errorf("cluster not ok within %v (last error: %v)", startTimeout, err)
		case <-tick.C:
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a log or output buffer safe for concurrent writers.
type syncBuffer = syncbuf.Buffer
