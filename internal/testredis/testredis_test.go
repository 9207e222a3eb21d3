package testredis_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp/internal/testredis"
)

func TestStartStopRestart(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      testredis.StartOptions
		survives  bool
		clustered bool
	}{
		{name: "ephemeral", opts: testredis.StartOptions{}, survives: false},
		{name: "persist", opts: testredis.StartOptions{Persist: true}, survives: true},
		{name: "cluster", opts: testredis.StartOptions{Cluster: true}, survives: false, clustered: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testredis.StartWithOptions(t, tc.opts)
			var c redis.UniversalClient = s.Client(t)
			if tc.clustered {
				c = s.ClusterClient(t)
			}
			ctx := t.Context()
			require.NoError(t, c.Set(ctx, "k", "v", time.Minute).Err())

			s.Stop()
			s.Stop() // idempotent
			assert.Error(t, c.Get(ctx, "k").Err(), "server is down")

			s.Restart(t)
			var got string
			require.Eventually(t, func() bool {
				var err error
				got, err = c.Get(ctx, "k").Result()
				return err == nil || err == redis.Nil
			}, 10*time.Second, 20*time.Millisecond, "server answers again")
			if tc.survives {
				assert.Equal(t, "v", got)
			} else {
				assert.Empty(t, got)
			}
		})
	}
}

func TestTwoServersAreIndependent(t *testing.T) {
	a, b := testredis.Start(t), testredis.Start(t)
	require.NotEqual(t, a.Addr, b.Addr)
	ctx := t.Context()
	require.NoError(t, a.Client(t).Set(ctx, "k", "a", 0).Err())
	assert.ErrorIs(t, b.Client(t).Get(ctx, "k").Err(), redis.Nil)
}
