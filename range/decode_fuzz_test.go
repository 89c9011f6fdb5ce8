package replica

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Fuzz tests of every decoder of bytes the engine stores or a peer sends:
// no input makes them panic, and the key encodings keep their properties.
// The seeds run with go test; a short fuzzing run of one target:
//
//	go test ./range -run XXX -fuzz FuzzReceiveSnapshot -fuzztime 10s

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// FuzzReadValueRecord stores arbitrary bytes as a user key's record and
// reads it back through a batch, as apply does.
func FuzzReadValueRecord(f *testing.F) {
	db := openTestDB(f, vfs.NewMem())
	f.Cleanup(func() { db.Close() })
	f.Add([]byte("k"), mustMarshal(f, &pb.ValueRecord{Value: []byte("v"), CreateRevision: 3, ModRevision: 7, Version: 2}))
	f.Add([]byte("k"), mustMarshal(f, &pb.ValueRecord{Value: []byte("v"), ModRevision: 7, Intent: &pb.Intent{TxnId: []byte("t"), PrimaryKey: []byte("p")}}))
	f.Add([]byte(""), []byte{})
	f.Add([]byte("\x00"), []byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, key, stored []byte) {
		b := db.NewIndexedBatch()
		defer b.Close()
		if err := b.Set(UserKey(key), stored, nil); err != nil {
			t.Fatal(err)
		}
		rec, err := readValueRecord(b, key)
		if err != nil {
			if proto.Unmarshal(stored, &pb.ValueRecord{}) == nil {
				t.Fatalf("refused a record that decodes: %v", err)
			}
			return
		}
		again := &pb.ValueRecord{}
		if err := proto.Unmarshal(mustMarshal(t, rec), again); err != nil || !proto.Equal(rec, again) {
			t.Fatalf("record %v does not survive a round trip: %v, %v", rec, again, err)
		}
		kv, err := readRecord(b, key)
		switch {
		case err != nil:
			t.Fatalf("readRecord after readValueRecord succeeded: %v", err)
		case (kv == nil) != (rec.ModRevision == 0):
			t.Fatalf("mod revision %d gave committed value %v", rec.ModRevision, kv)
		case kv != nil && (!bytes.Equal(kv.Key, key) || kv.ModRevision != rec.ModRevision):
			t.Fatalf("committed value %v of record %v at %q", kv, rec, key)
		}
	})
}

// FuzzLoadStorage replaces one of a range's stored state values (or a log
// entry) with arbitrary bytes and loads the range: LoadStorage and every
// raft.Storage method must fail cleanly or work. (Opening a replica on
// state that decodes but is inconsistent, e.g. a commit index past the
// log, is refused by etcd/raft with a panic by design, and is not
// covered.)
func FuzzLoadStorage(f *testing.F) {
	db := openTestDB(f, vfs.NewMem())
	f.Cleanup(func() { db.Close() })
	desc := testDescriptor(1, "a", "z")
	bootstrap(f, db, desc)
	st, err := LoadStorage(db, desc.RangeId)
	if err != nil {
		f.Fatal(err)
	}
	_, last := st.Bounds()
	targets := [][]byte{
		HardStateKey(1), AppliedStateKey(1), TruncatedStateKey(1), DescriptorKey(1),
		LogKey(1, last), LogKey(1, last+1), LogKey(1, math.MaxUint64-1),
	}
	originals := map[string][]byte{}
	for _, k := range targets {
		v, err := getRaw(db, k)
		if err != nil {
			f.Fatal(err)
		}
		originals[string(k)] = v
	}
	for i, k := range targets {
		if v := originals[string(k)]; v != nil {
			f.Add(uint8(i), v)
		}
		f.Add(uint8(i), []byte{})
		f.Add(uint8(i), []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	}
	f.Add(uint8(2), mustMarshal(f, &pb.TruncatedState{Index: math.MaxUint64, Term: 1}))
	f.Add(uint8(1), mustMarshal(f, &pb.AppliedState{Index: 3, ConfState: []byte{0x0a, 0x05}}))
	f.Fuzz(func(t *testing.T, which uint8, value []byte) {
		key := targets[int(which)%len(targets)]
		if err := db.Set(key, value, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		defer func() {
			var err error
			if v := originals[string(key)]; v != nil {
				err = db.Set(key, v, pebble.NoSync)
			} else {
				err = db.Delete(key, pebble.NoSync)
			}
			if err != nil {
				t.Fatal(err)
			}
		}()
		st, err := LoadStorage(db, 1)
		if err != nil {
			return
		}
		_, _, _ = st.InitialState()
		first, _ := st.FirstIndex()
		last, _ := st.LastIndex()
		for _, i := range []uint64{first - 1, first, last, last + 1} {
			_, _ = st.Term(i)
		}
		if last >= first && last-first < 1000 {
			_, _ = st.Entries(first, last+1, math.MaxUint64)
		}
		_, _ = st.Snapshot()
		_ = st.Descriptor()
		_ = st.Applied()
	})
}

// snapshotSeed is a well-formed snapshot of range 1 for replica 1, at
// index 10 of term 6, with a user key and a transaction record.
func snapshotSeed(tb testing.TB) (msg, chunk []byte) {
	tb.Helper()
	desc := testDescriptor(1, "b", "x")
	desc.Generation = 2
	m := raftpb.Message{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 6, Snapshot: &raftpb.Snapshot{
		Data:     mustMarshal(tb, &pb.SnapshotData{Descriptor_: desc, LastRevision: 100}),
		Metadata: raftpb.SnapshotMetadata{Index: 10, Term: 6, ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}}},
	}}
	msg, err := m.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	chunk = mustMarshal(tb, &pb.SnapshotChunk{Final: true, Kvs: []*pb.EngineKV{
		{Key: UserKey([]byte("c")), Value: mustMarshal(tb, &pb.ValueRecord{Value: []byte("v"), CreateRevision: 90, ModRevision: 99, Version: 3})},
		{Key: TxnRecordKey([]byte("d"), []byte("txn")), Value: mustMarshal(tb, &pb.TxnRecord{Status: pb.TxnRecord_COMMITTED})},
	}})
	return msg, chunk
}

// FuzzReceiveSnapshot hands a follower a snapshot message and chunk data
// decoded from arbitrary bytes, as the node's Raft service does, then runs
// the Raft loop so that an accepted snapshot is installed, and reads back
// what was installed.
func FuzzReceiveSnapshot(f *testing.F) {
	db := openTestDB(f, vfs.NewMem())
	f.Cleanup(func() { db.Close() })
	msg, chunk := snapshotSeed(f)
	f.Add(msg, chunk)
	f.Add(msg, []byte{})
	f.Add([]byte{}, chunk)
	desc := testDescriptor(1, "a", "y")
	f.Fuzz(func(t *testing.T, msgBytes, chunkBytes []byte) {
		var m raftpb.Message
		if m.Unmarshal(msgBytes) != nil {
			return // refused by the node before the replica sees it
		}
		c := &pb.SnapshotChunk{}
		if proto.Unmarshal(chunkBytes, c) != nil {
			return
		}
		// A fresh follower: every range's state wiped, range 1 bootstrapped.
		b := db.NewBatch()
		if err := b.DeleteRange([]byte{0x00}, []byte{0xff}, nil); err != nil {
			t.Fatal(err)
		}
		if err := WriteInitialState(b, desc); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		b.Close()
		st, err := LoadStorage(db, 1)
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(Config{NodeID: 1, DB: db}, st)
		if err != nil {
			t.Fatal(err)
		}
		// Not deferred: after a panic with the replica's lock held, Close
		// would deadlock and hide the panic.
		installSnapshot(t, db, r, m, c.Kvs)
		r.Close()
	})
}

// installSnapshot hands r the snapshot and runs up to three rounds of the
// Raft loop, then reads back what was installed.
func installSnapshot(t *testing.T, db *pebble.DB, r *Replica, m raftpb.Message, kvs []*pb.EngineKV) {
	if r.ReceiveSnapshot(m, kvs) != nil {
		return
	}
	for range 3 {
		rd, ok := r.Ready()
		if !ok {
			break
		}
		if _, _, err := persistAppend(db, r, rd); err != nil {
			return
		}
		if _, err := r.Apply(rd.Apply); err != nil {
			return
		}
	}
	if _, err := LoadStorage(db, 1); err != nil {
		t.Fatalf("state after a snapshot was installed does not load: %v", err)
	}
	for _, kv := range kvs {
		if key, err := DecodeUserKey(kv.Key); err == nil {
			_, _ = readRecord(db, key)
		}
	}
}

// decodeOrdered inverts encodeOrdered: it returns the key encoded at the
// start of enc and what follows the encoding.
func decodeOrdered(enc []byte) (key, rest []byte, ok bool) {
	key = []byte{}
	for i := 0; i < len(enc); i++ {
		if enc[i] != 0x00 {
			key = append(key, enc[i])
			continue
		}
		if i+1 == len(enc) {
			return nil, nil, false
		}
		switch enc[i+1] {
		case 0xFF:
			key = append(key, 0x00)
			i++
		case 0x01:
			return key, enc[i+2:], true
		default:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

func sign(c int) int { return max(-1, min(1, c)) }

// inSpan reports whether k lies in [lo, hi).
func inSpan(k, lo, hi []byte) bool {
	return bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0
}

// FuzzTxnRecordKey checks the transaction record key encoding: it round
// trips, sorts like the anchor keys, is prefix-free, and places a record
// in the record span of exactly the ranges that hold its anchor.
func FuzzTxnRecordKey(f *testing.F) {
	f.Add([]byte("a"), []byte("b"), []byte("txn"))
	f.Add([]byte("a"), []byte("a\x00"), []byte("\x00\x01"))
	f.Add([]byte("a\x00"), []byte("a\x00\x00"), []byte{})
	f.Add([]byte{}, []byte("\xff"), []byte("\xff\xff"))
	f.Add([]byte("\x00\xff"), []byte("\x00\x01"), []byte("id"))
	f.Fuzz(func(t *testing.T, a, b, id []byte) {
		encA, encB := encodeOrdered(nil, a), encodeOrdered(nil, b)
		for _, tc := range []struct{ key, enc []byte }{{a, encA}, {b, encB}} {
			dec, rest, ok := decodeOrdered(tc.enc)
			if !ok || !bytes.Equal(dec, tc.key) || len(rest) != 0 {
				t.Fatalf("enc(%x) = %x decodes to %x, rest %x, ok %v", tc.key, tc.enc, dec, rest, ok)
			}
		}
		if got, want := sign(bytes.Compare(encA, encB)), sign(bytes.Compare(a, b)); got != want {
			t.Fatalf("enc(%x) = %x and enc(%x) = %x compare %d, the keys %d", a, encA, b, encB, got, want)
		}
		if !bytes.Equal(a, b) && (bytes.HasPrefix(encB, encA) || bytes.HasPrefix(encA, encB)) {
			t.Fatalf("enc(%x) = %x and enc(%x) = %x: one is a prefix of the other", a, encA, b, encB)
		}
		rec := TxnRecordKey(a, id)
		if rec[0] != prefixTxnRecord {
			t.Fatalf("record key %x has prefix %x", rec, rec[0])
		}
		anchor, gotID, ok := decodeOrdered(rec[1:])
		if !ok || !bytes.Equal(anchor, a) || !bytes.Equal(gotID, id) {
			t.Fatalf("record key %x decodes to anchor %x and id %x (%v)", rec, anchor, gotID, ok)
		}
		// Records sort by anchor whatever their IDs.
		if c := bytes.Compare(a, b); c != 0 && sign(bytes.Compare(rec, TxnRecordKey(b, nil))) != sign(c) {
			t.Fatalf("records of %x (id %x) and %x sort against their anchors", a, id, b)
		}
		// The record of a lies in the span of [start, end) iff the range
		// holds a, for ranges bounded by b and id.
		for _, span := range [][2][]byte{{b, nil}, {b, id}, {id, b}, {nil, b}} {
			start, end := span[0], span[1]
			if len(end) > 0 && bytes.Compare(start, end) >= 0 {
				continue
			}
			lo, hi := TxnRecordSpan(start, end)
			holds := bytes.Compare(a, start) >= 0 && (len(end) == 0 || bytes.Compare(a, end) < 0)
			if inSpan(rec, lo, hi) != holds {
				t.Fatalf("record %x of anchor %x: in span [%x, %x) of range [%x, %x) = %v, want %v",
					rec, a, lo, hi, start, end, !holds, holds)
			}
		}
	})
}

// FuzzEngineKeys checks the decoders of engine keys against their
// encoders.
func FuzzEngineKeys(f *testing.F) {
	f.Add(UserKey([]byte("k")), uint64(1), uint64(5))
	f.Add(DescriptorKey(7), uint64(7), uint64(0))
	f.Add(LogKey(3, 9), uint64(3), uint64(math.MaxUint64))
	f.Add([]byte{}, uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, k []byte, rangeID, index uint64) {
		if user, err := DecodeUserKey(k); err == nil && !bytes.Equal(UserKey(user), k) {
			t.Fatalf("user key %x decodes to %x", k, user)
		}
		if id, ok := IsDescriptorKey(k); ok && !bytes.Equal(DescriptorKey(id), k) {
			t.Fatalf("descriptor key %x of range %d", k, id)
		}
		if i, err := logIndexFromKey(k); err == nil && !bytes.Equal(LogKey(binary.BigEndian.Uint64(k[1:9]), i), k) {
			t.Fatalf("log key %x decodes to index %d", k, i)
		}
		if id, ok := IsDescriptorKey(DescriptorKey(rangeID)); !ok || id != rangeID {
			t.Fatalf("descriptor key of range %d decodes to %d, %v", rangeID, id, ok)
		}
		if i, err := logIndexFromKey(LogKey(rangeID, index)); err != nil || i != index {
			t.Fatalf("log key of index %d decodes to %d, %v", index, i, err)
		}
		lo, hi := RangeLocalSpan(rangeID)
		if rangeID < math.MaxUint64 {
			for _, key := range [][]byte{LogKey(rangeID, index), HardStateKey(rangeID), DescriptorKey(rangeID)} {
				if !inSpan(key, lo, hi) {
					t.Fatalf("range %d's key %x outside its local span [%x, %x)", rangeID, key, lo, hi)
				}
			}
		}
		if index < math.MaxUint64 && bytes.Compare(LogKey(rangeID, index), LogKey(rangeID, index+1)) >= 0 {
			t.Fatalf("log keys of range %d do not sort by index at %d", rangeID, index)
		}
	})
}
