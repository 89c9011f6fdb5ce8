package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Storage is the raft.Storage of one replica, kept in the node's shared
// Pebble engine under the range's local prefix (see keys.go).
//
// Raft reads it through the raft.Storage methods while the replica lock is
// held. Writes go into batches the node commits (PersistAppend, apply,
// truncation); the cached bounds below change only after such a batch has
// been committed, so raft never sees an entry that is not in the engine.
type Storage struct {
	db      *pebble.DB
	rangeID uint64

	// mu guards the cached copies of persisted state. No IO is done under it.
	mu struct {
		sync.Mutex
		hardState raftpb.HardState
		truncated *pb.TruncatedState
		lastIndex uint64
		applied   *pb.AppliedState
		confState raftpb.ConfState
		desc      *pb.RangeDescriptor
		// cache holds the persisted entries not yet applied.
		cache entryCache
	}
}

var _ raft.Storage = (*Storage)(nil)

// ErrNotFound is returned by LoadStorage when the engine holds no replica of
// the range.
var ErrNotFound = errors.New("replica not found in engine")

// LoadStorage reads a range's persisted Raft state from the engine.
func LoadStorage(db *pebble.DB, rangeID uint64) (*Storage, error) {
	s := &Storage{db: db, rangeID: rangeID}
	desc := &pb.RangeDescriptor{}
	if ok, err := getProto(db, DescriptorKey(rangeID), desc); err != nil {
		return nil, err
	} else if !ok {
		return nil, ErrNotFound
	}
	hsBytes, err := getRaw(db, HardStateKey(rangeID))
	if err != nil {
		return nil, err
	}
	var hs raftpb.HardState
	if err := hs.Unmarshal(hsBytes); err != nil {
		return nil, fmt.Errorf("range %d: decode hard state: %w", rangeID, err)
	}
	trunc := &pb.TruncatedState{}
	if _, err := getProto(db, TruncatedStateKey(rangeID), trunc); err != nil {
		return nil, err
	}
	applied := &pb.AppliedState{}
	if _, err := getProto(db, AppliedStateKey(rangeID), applied); err != nil {
		return nil, err
	}
	var cs raftpb.ConfState
	if err := cs.Unmarshal(applied.ConfState); err != nil {
		return nil, fmt.Errorf("range %d: decode conf state: %w", rangeID, err)
	}
	last, err := lastLogIndex(db, rangeID)
	if err != nil {
		return nil, err
	}
	if last < trunc.Index {
		last = trunc.Index
	}
	// The stored commit index may trail: a HardState whose only change is
	// the commit index is not written (PersistAppend). Everything applied
	// was committed, and the applied index is durable with the applied
	// state, so the commit index is at least that.
	if !raft.IsEmptyHardState(hs) && hs.Commit < applied.Index {
		hs.Commit = applied.Index
	}
	s.mu.hardState = hs
	s.mu.truncated = trunc
	s.mu.lastIndex = last
	s.mu.applied = applied
	s.mu.confState = cs
	s.mu.desc = desc
	return s, nil
}

// lastLogIndex returns the index of the last log entry, or 0 if there is none.
func lastLogIndex(r pebble.Reader, rangeID uint64) (uint64, error) {
	it, err := r.NewIter(&pebble.IterOptions{
		LowerBound: LogKey(rangeID, 0),
		UpperBound: LogKey(rangeID, math.MaxUint64),
	})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	return logIndexFromKey(it.Key())
}

// ConfStateFromDescriptor derives a Raft configuration from a descriptor.
func ConfStateFromDescriptor(desc *pb.RangeDescriptor) raftpb.ConfState {
	var cs raftpb.ConfState
	for _, r := range desc.Replicas {
		if r.Type == pb.ReplicaDescriptor_LEARNER {
			cs.Learners = append(cs.Learners, r.ReplicaId)
		} else {
			cs.Voters = append(cs.Voters, r.ReplicaId)
		}
	}
	return cs
}

// Initial log position of a bootstrapped range. Starting above zero (as
// CockroachDB does) means every replica of a new range begins with the same
// non-empty, already-applied log prefix, so no replica needs a snapshot to
// learn the configuration.
const (
	initialIndex = 5
	initialTerm  = 5
)

// WriteInitialState writes the state of a freshly bootstrapped replica of
// desc into b. Every replica of the range writes the same state.
func WriteInitialState(b *pebble.Batch, desc *pb.RangeDescriptor) error {
	return writeInitialState(b, desc, 0)
}

// writeInitialState writes a new replica's Raft state; lastRevision is the
// revision the range's writes must stay above (a split's right-hand range
// inherits it from the left).
func writeInitialState(b *pebble.Batch, desc *pb.RangeDescriptor, lastRevision int64) error {
	cs := ConfStateFromDescriptor(desc)
	csBytes, err := cs.Marshal()
	if err != nil {
		return err
	}
	hs := raftpb.HardState{Term: initialTerm, Commit: initialIndex}
	if err := setHardState(b, desc.RangeId, hs); err != nil {
		return err
	}
	if err := putProto(b, TruncatedStateKey(desc.RangeId), &pb.TruncatedState{Index: initialIndex, Term: initialTerm}); err != nil {
		return err
	}
	if err := putProto(b, AppliedStateKey(desc.RangeId), &pb.AppliedState{Index: initialIndex, Term: initialTerm, LastRevision: lastRevision, ConfState: csBytes}); err != nil {
		return err
	}
	return putProto(b, DescriptorKey(desc.RangeId), desc)
}

// InitialState implements raft.Storage.
func (s *Storage) InitialState() (raftpb.HardState, raftpb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.hardState, s.mu.confState, nil
}

// Entries implements raft.Storage.
func (s *Storage) Entries(lo, hi, maxSize uint64) ([]raftpb.Entry, error) {
	s.mu.Lock()
	first, last := s.mu.truncated.Index+1, s.mu.lastIndex
	cached, ok := s.mu.cache.get(lo, hi, maxSize)
	s.mu.Unlock()
	if ok && lo >= first {
		return cached, nil
	}
	if lo < first {
		return nil, raft.ErrCompacted
	}
	if hi > last+1 {
		return nil, raft.ErrUnavailable
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: LogKey(s.rangeID, lo),
		UpperBound: LogKey(s.rangeID, hi),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var ents []raftpb.Entry
	var size uint64
	want := lo
	for valid := it.First(); valid; valid = it.Next() {
		var e raftpb.Entry
		if err := e.Unmarshal(it.Value()); err != nil {
			return nil, fmt.Errorf("range %d: decode entry: %w", s.rangeID, err)
		}
		if e.Index != want {
			// A hole means a concurrent truncation removed what we wanted.
			return nil, raft.ErrCompacted
		}
		size += uint64(e.Size())
		if len(ents) > 0 && size > maxSize {
			break
		}
		ents = append(ents, e)
		want++
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if len(ents) == 0 {
		return nil, raft.ErrCompacted
	}
	return ents, nil
}

// Term implements raft.Storage.
func (s *Storage) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	trunc, last := s.mu.truncated, s.mu.lastIndex
	term, cached := s.mu.cache.term(i)
	s.mu.Unlock()
	switch {
	case cached && i > trunc.Index:
		return term, nil
	case i == trunc.Index:
		return trunc.Term, nil
	case i < trunc.Index:
		return 0, raft.ErrCompacted
	case i > last:
		return 0, raft.ErrUnavailable
	}
	return termAt(s.db, s.rangeID, i)
}

func termAt(r pebble.Reader, rangeID, i uint64) (uint64, error) {
	v, closer, err := r.Get(LogKey(rangeID, i))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, raft.ErrCompacted
	} else if err != nil {
		return 0, err
	}
	defer closer.Close()
	var e raftpb.Entry
	if err := e.Unmarshal(v); err != nil {
		return 0, err
	}
	return e.Term, nil
}

// LastIndex implements raft.Storage.
func (s *Storage) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.lastIndex, nil
}

// FirstIndex implements raft.Storage.
func (s *Storage) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.truncated.Index + 1, nil
}

// Snapshot implements raft.Storage. It returns only the metadata as of the
// applied state; the node reads the data when it sends the snapshot (see
// OpenSnapshot), and the message's metadata is replaced by that of the data
// actually sent. Raft accepts a snapshot newer than it asked for.
func (s *Storage) Snapshot() (raftpb.Snapshot, error) {
	s.mu.Lock()
	applied, cs, desc := s.mu.applied, s.mu.confState, s.mu.desc
	s.mu.Unlock()
	data, err := proto.Marshal(&pb.SnapshotData{Descriptor_: desc, LastRevision: applied.LastRevision})
	if err != nil {
		return raftpb.Snapshot{}, err
	}
	return raftpb.Snapshot{
		Data:     data,
		Metadata: raftpb.SnapshotMetadata{Index: applied.Index, Term: applied.Term, ConfState: cs},
	}, nil
}

// appendEntries writes entries into b and deletes any old entries after the
// last of them (raft may overwrite an uncommitted suffix). afterSnapshot says
// that b already clears the whole log.
func (s *Storage) appendEntries(b *pebble.Batch, ents []raftpb.Entry, afterSnapshot bool) error {
	if len(ents) == 0 {
		return nil
	}
	// Each entry is encoded in place in the batch's buffer, as putProto
	// does, rather than marshalled into a slice of its own and copied.
	for i := range ents {
		e := &ents[i]
		op := b.SetDeferred(logKeyLen, e.Size())
		appendLogKey(op.Key[:0], s.rangeID, e.Index)
		if _, err := e.MarshalToSizedBuffer(op.Value); err != nil {
			return err // unreachable for an entry that sized itself, as in putProto
		}
		if err := op.Finish(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	oldLast := s.mu.lastIndex
	s.mu.Unlock()
	newLast := ents[len(ents)-1].Index
	if !afterSnapshot && oldLast > newLast {
		return b.DeleteRange(LogKey(s.rangeID, newLast+1), LogKey(s.rangeID, oldLast+1), nil)
	}
	return nil
}

func setHardState(b *pebble.Batch, rangeID uint64, hs raftpb.HardState) error {
	data, err := hs.Marshal()
	if err != nil {
		return err
	}
	return b.Set(HardStateKey(rangeID), data, nil)
}

// markAppended updates the cached bounds after a batch holding entries and
// a hard state has been committed.
func (s *Storage) markAppended(ents []raftpb.Entry, hs raftpb.HardState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(ents) > 0 {
		s.mu.lastIndex = ents[len(ents)-1].Index
		s.mu.cache.add(ents)
	}
	if !raft.IsEmptyHardState(hs) {
		s.mu.hardState = hs
	}
}

// truncateTo deletes log entries up to and including index, which must be
// applied, and records the new truncated state.
func (s *Storage) truncateTo(b *pebble.Batch, index uint64) (*pb.TruncatedState, error) {
	s.mu.Lock()
	first := s.mu.truncated.Index + 1
	s.mu.Unlock()
	term, err := s.Term(index)
	if err != nil {
		return nil, err
	}
	t := &pb.TruncatedState{Index: index, Term: term}
	if err := b.DeleteRange(LogKey(s.rangeID, first), LogKey(s.rangeID, index+1), nil); err != nil {
		return nil, err
	}
	return t, putProto(b, TruncatedStateKey(s.rangeID), t)
}

func (s *Storage) markTruncated(t *pb.TruncatedState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.Index > s.mu.truncated.Index {
		s.mu.truncated = t
		s.mu.cache.dropTo(t.Index)
	}
}

// setApplied records an applied state after its batch has been committed.
func (s *Storage) setApplied(a *pb.AppliedState) error {
	var cs raftpb.ConfState
	if err := cs.Unmarshal(a.ConfState); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.applied = a
	s.mu.confState = cs
	s.mu.cache.dropTo(a.Index)
	return nil
}

// setDescriptor records a descriptor after the batch that wrote it has been
// committed.
func (s *Storage) setDescriptor(d *pb.RangeDescriptor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.desc = d
}

// WriteSystemValue writes a committed user value at revision 1 (before any
// real revision); bootstrap uses it to seed system keys identically on every
// replica.
func WriteSystemValue(b *pebble.Batch, key, value []byte) error {
	return putProto(b, UserKey(key), &pb.ValueRecord{Value: value, CreateRevision: 1, ModRevision: 1, Version: 1})
}

// Applied returns the persisted applied state. The caller must not modify it.
func (s *Storage) Applied() *pb.AppliedState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.applied
}

// Descriptor returns the replica's current range descriptor.
func (s *Storage) Descriptor() *pb.RangeDescriptor {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.desc
}

// Bounds returns the first and last index of the log held in storage.
func (s *Storage) Bounds() (first, last uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.truncated.Index + 1, s.mu.lastIndex
}

func getRaw(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// storedMessage is a message this package stores: every raftrixpb message
// has the generated fast methods (proto/raftrixpb/codec.go says why).
type storedMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
	UnmarshalVT([]byte) error
}

// getProto decodes the value at key into m, a fresh message, and reports
// whether there was one.
func getProto(r pebble.Reader, key []byte, m storedMessage) (bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer closer.Close()
	// v is valid until closer.Close; UnmarshalVT copies what it keeps.
	if err := m.UnmarshalVT(v); err != nil {
		return false, fmt.Errorf("decode %x: %w", key, err)
	}
	return true, nil
}

// putProto sets key to m's encoding, encoded in place in the batch's own
// buffer: a record marshalled on its own and then copied into the batch was
// 5% of the nodes' allocated bytes under 4-range transactions.
func putProto(b *pebble.Batch, key []byte, m storedMessage) error {
	op := b.SetDeferred(len(key), m.SizeVT())
	copy(op.Key, key)
	if _, err := m.MarshalToSizedBufferVT(op.Value); err != nil {
		// Unreachable for a message that sized itself; the batch now holds
		// a half-written value, and the caller's error discards the batch.
		return err
	}
	return op.Finish()
}

// WriteUninitializedState writes the state of a replica that is about to
// receive its first snapshot (a replica added to this node): the
// descriptor, so the replica can be opened, and an empty Raft log and
// configuration, which the snapshot replaces.
func WriteUninitializedState(b *pebble.Batch, desc *pb.RangeDescriptor) error {
	if err := setHardState(b, desc.RangeId, raftpb.HardState{}); err != nil {
		return err
	}
	if err := putProto(b, TruncatedStateKey(desc.RangeId), &pb.TruncatedState{}); err != nil {
		return err
	}
	if err := putProto(b, AppliedStateKey(desc.RangeId), &pb.AppliedState{}); err != nil {
		return err
	}
	return putProto(b, DescriptorKey(desc.RangeId), desc)
}

// DestroyData deletes everything a removed replica kept: its Raft state and
// the user keys and transaction records of its span. It leaves a tombstone
// with the replica's ID, so that the node never recreates a replica of the
// range with that ID or a lower one: a leader that still lists the removed
// replica is stale, and a replica recreated from its snapshot would help it
// reach a quorum of an old configuration.
func DestroyData(b *pebble.Batch, desc *pb.RangeDescriptor, replicaID uint64) error {
	lo, hi := RangeLocalSpan(desc.RangeId)
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return err
	}
	for _, span := range rangeSpans(desc.StartKey, desc.EndKey) {
		if err := b.DeleteRange(span[0], span[1], nil); err != nil {
			return err
		}
	}
	// Written after the range deletion, so in the same batch it survives it.
	return b.Set(TombstoneKey(desc.RangeId), binary.BigEndian.AppendUint64(nil, replicaID), nil)
}

// Tombstone returns the highest replica ID of the range that this node has
// destroyed, or 0.
func Tombstone(db pebble.Reader, rangeID uint64) (uint64, error) {
	v, closer, err := db.Get(TombstoneKey(rangeID))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("range %d: tombstone of %d bytes", rangeID, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
