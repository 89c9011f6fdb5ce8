package node

import (
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// tableWriteBuffer is how many bytes of a table being written are handed
// to the kernel at once.
//
// Pebble writes a table (a flush's or a compaction's output) through a
// 4 KiB bufio.Writer, so nearly every data block costs its own write
// system call. On this VM's ext4 a 4 KiB write moved 0.87 GB/s and a
// 256 KiB one 3.5 GB/s (4 µs of fixed cost per call), and under 256
// writers those calls were about 7% of the nodes' CPU (BENCHMARKS.md).
const tableWriteBuffer = 256 << 10

// tableBufferingFS is the engine's filesystem with the tables it creates
// (.sst, and .blob should value separation be turned on) buffered in
// tableWriteBuffer chunks. Everything else, the WAL above all, is written
// as Pebble asks: a WAL record must reach the kernel when Pebble writes it,
// since an unsynced write survives a process crash only from there.
//
// Buffering a table changes nothing Pebble can see: every call that reads,
// sizes or syncs the file first writes out what is buffered, and a table
// is synced before Pebble links it into the LSM.
type tableBufferingFS struct {
	vfs.FS
}

func (fs tableBufferingFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	switch filepath.Ext(name) {
	case ".sst", ".blob":
		return &bufferedFile{File: f, buf: make([]byte, 0, tableWriteBuffer)}, nil
	}
	return f, nil
}

// bufferedFile gathers sequential writes into buf. Pebble writes a table
// from one goroutine, but a sync may come from another, so the buffer is
// locked.
type bufferedFile struct {
	vfs.File
	mu  sync.Mutex
	buf []byte
}

func (f *bufferedFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.buf)+len(p) > cap(f.buf) {
		if err := f.flushLocked(); err != nil {
			return 0, err
		}
	}
	if len(p) >= cap(f.buf) {
		return f.File.Write(p)
	}
	f.buf = append(f.buf, p...)
	return len(p), nil
}

// flushLocked writes out the buffer.
func (f *bufferedFile) flushLocked() error {
	if len(f.buf) == 0 {
		return nil
	}
	_, err := f.File.Write(f.buf)
	f.buf = f.buf[:0]
	return err
}

func (f *bufferedFile) flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flushLocked()
}

func (f *bufferedFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *bufferedFile) Read(p []byte) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *bufferedFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *bufferedFile) Stat() (vfs.FileInfo, error) {
	if err := f.flush(); err != nil {
		return nil, err
	}
	return f.File.Stat()
}

func (f *bufferedFile) Sync() error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *bufferedFile) SyncData() error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *bufferedFile) SyncTo(length int64) (fullSync bool, err error) {
	if err := f.flush(); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}

func (f *bufferedFile) Close() error {
	err := f.flush()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	return err
}
