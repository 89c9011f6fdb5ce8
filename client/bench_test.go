package client

import (
	"context"
	"testing"
	"time"
)

// The per-request cost of the client with its cache warm, apart from the
// network: route alone, and a Get against a fake node on loopback.

// warmDB returns a DB whose cache holds one range led by a fake node, and
// that node.
func warmDB(b *testing.B) (*DB, *fakeNode) {
	n := startFake(b, 1)
	n.lookup = lookupAnswer(desc(1, "", "", 1), n)
	db := newTestDB(b, 5*time.Second, n)
	if _, err := db.Get(context.Background(), []byte("k")); err != nil {
		b.Fatal(err)
	}
	return db, n
}

func BenchmarkRoute(b *testing.B) {
	db, n := warmDB(b)
	ctx := context.Background()
	key := []byte("k")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if t := db.route(ctx, key); t.addr != n.addr {
				b.Errorf("routed to %s, want %s", t.addr, n.addr)
				return
			}
		}
	})
}

func BenchmarkGetCached(b *testing.B) {
	db, _ := warmDB(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := []byte("k")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.Get(ctx, key); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if d := db.stats.direct.Load(); d < int64(b.N) {
		b.Fatalf("%d direct answers for %d gets", d, b.N)
	}
}
