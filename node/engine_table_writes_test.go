package node

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// underlyingSize is the size of name as the wrapped filesystem sees it,
// without going through the buffer.
func underlyingSize(t *testing.T, fs vfs.FS, name string) int64 {
	t.Helper()
	fi, err := fs.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestTableWritesAreBufferedUntilSynced(t *testing.T) {
	mem := vfs.NewMem()
	fs := tableBufferingFS{mem}
	f, err := fs.Create("000001.sst", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	write := func(n int) {
		p := bytes.Repeat([]byte{byte(len(want))}, n)
		// Before the write: under the race detector Pebble's in-memory
		// filesystem inverts the bytes it was handed, to catch callers
		// that reuse them.
		want = append(want, p...)
		if got, err := f.Write(p); err != nil || got != n {
			t.Fatalf("write of %d bytes: %d, %v", n, got, err)
		}
	}
	for range 10 {
		write(4000) // Pebble's blocks, well under the buffer
	}
	if got := underlyingSize(t, mem, "000001.sst"); got != 0 {
		t.Fatalf("%d bytes reached the file before a sync; want them buffered", got)
	}
	// What Pebble asks about the file includes what is buffered.
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(want)) {
		t.Fatalf("Stat: size %v, err %v; want %d", fi, err, len(want))
	}
	write(tableWriteBuffer + 10) // larger than the buffer: written through
	write(100)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := underlyingSize(t, mem, "000001.sst"); got != int64(len(want)) {
		t.Fatalf("after Sync the file holds %d bytes, want %d", got, len(want))
	}
	write(5000)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := mem.Open("000001.sst")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file holds %d bytes, want %d in the order written", len(got), len(want))
	}
}

// The WAL must not be buffered: an unsynced write survives a process crash
// only once it is in the kernel.
func TestOtherFilesAreWrittenThrough(t *testing.T) {
	mem := vfs.NewMem()
	f, err := tableBufferingFS{mem}.Create("000002.log", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("record")); err != nil {
		t.Fatal(err)
	}
	if got := underlyingSize(t, mem, "000002.log"); got != int64(len("record")) {
		t.Fatalf("WAL file holds %d bytes after a write, want %d", got, len("record"))
	}
}

// An engine on the buffering filesystem flushes, compacts and reopens with
// every key intact.
func TestEngineOnBufferedTables(t *testing.T) {
	mem := vfs.NewMem()
	open := func() *pebble.DB {
		db, err := pebble.Open("db", &pebble.Options{FS: tableBufferingFS{mem}, MemTableSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	value := bytes.Repeat([]byte("v"), 256)
	const keys = 20000
	for i := range keys {
		if err := db.Set(fmt.Appendf(nil, "key-%06d", i), value, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(t.Context(), []byte("key-"), []byte("key-~"), true); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open()
	defer db.Close()
	for _, i := range []int{0, 1, keys / 2, keys - 1} {
		v, closer, err := db.Get(fmt.Appendf(nil, "key-%06d", i))
		if err != nil {
			t.Fatalf("key %d after reopen: %v", i, err)
		}
		if !bytes.Equal(v, value) {
			t.Fatalf("key %d: wrong value", i)
		}
		closer.Close()
	}
}

// BenchmarkTableWrites measures what a flush and a full compaction of
// 100,000 256-byte values cost on the real disk, with Pebble's own 4 KiB
// table writes and with tableBufferingFS: cpu-ns/op is the process's CPU
// time (user and system), the cost the nodes pay; ns/op is mostly fsync.
func BenchmarkTableWrites(b *testing.B) {
	for _, c := range []struct {
		name string
		fs   vfs.FS
	}{{"pebble", vfs.Default}, {"buffered", tableBufferingFS{vfs.Default}}} {
		b.Run(c.name, func(b *testing.B) {
			value := bytes.Repeat([]byte("v"), 256)
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				db, err := pebble.Open(b.TempDir(), &pebble.Options{FS: c.fs, MemTableSize: 64 << 20, Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
				if err != nil {
					b.Fatal(err)
				}
				for i := range 100000 {
					k := fmt.Appendf(nil, "key-%08d", (i*7919)%100000)
					if err := db.Set(k, value, pebble.NoSync); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				before := processCPU(b)
				if err := db.Flush(); err != nil {
					b.Fatal(err)
				}
				if err := db.Compact(b.Context(), []byte("key-"), []byte("key-~"), false); err != nil {
					b.Fatal(err)
				}
				cpu += processCPU(b) - before
				b.StopTimer()
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
