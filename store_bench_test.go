package cognitomcp

import (
	"crypto/rand"
	"strconv"
	"testing"
	"time"

	"github.com/cognitomcp/cognitomcp/internal/testredis"
)

// BenchmarkStore measures Get, Set and Take of a 512-byte value (about the
// size of an encrypted grant) on each Store. The redis rows need
// redis-server and are skipped without it.
func BenchmarkStore(b *testing.B) {
	value := make([]byte, 512)
	_, _ = rand.Read(value)
	stores := []struct {
		name string
		open func(b *testing.B) Store
	}{
		{"memory", func(*testing.B) Store { return NewMemoryStore() }},
		{"redis", func(b *testing.B) Store { return NewRedisStore(testredis.Start(b).Client(b), RedisStoreOptions{}) }},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			ctx := b.Context()
			b.Run("Get", func(b *testing.B) {
				if err := s.Set(ctx, "bench/get", value, time.Hour); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Get(ctx, "bench/get"); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Set", func(b *testing.B) {
				keys := make([]string, 1024)
				for i := range keys {
					keys[i] = "bench/set/" + strconv.Itoa(i)
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					if err := s.Set(ctx, keys[i%len(keys)], value, time.Hour); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Take", func(b *testing.B) {
				keys := make([]string, b.N)
				for i := range keys {
					keys[i] = "bench/take/" + strconv.Itoa(i)
					if err := s.Set(ctx, keys[i], value, time.Hour); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				for _, k := range keys {
					if _, err := s.Take(ctx, k); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
