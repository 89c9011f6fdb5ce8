package replica

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"

	"go.etcd.io/raft/v3"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Hooks for invariant checks in tests (internal/nemesis): they only read, and
// they cost a scan of the range, so nothing on the request path calls them.

// StateHash returns an FNV-64a hash of the replica's state machine and the
// applied index it reflects, both read from one Pebble snapshot. The hash
// covers the descriptor, the last applied revision and every engine key and
// value of the range's user span, so two replicas of a range at the same
// applied index must return the same hash.
func (r *Replica) StateHash() (appliedIndex uint64, hash uint64, err error) {
	snap, err := r.OpenSnapshot()
	if err != nil {
		return 0, 0, err
	}
	defer snap.Close()
	data := &pb.SnapshotData{}
	if err := proto.Unmarshal(snap.Data, data); err != nil {
		return 0, 0, err
	}
	desc, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap.Descriptor)
	if err != nil {
		return 0, 0, err
	}
	h := fnv.New64a()
	var buf []byte
	// Length-prefix every field so that no two different states hash the
	// same byte stream.
	write := func(b []byte) {
		buf = binary.AppendUvarint(buf[:0], uint64(len(b)))
		h.Write(buf)
		h.Write(b)
	}
	write(desc)
	write(binary.BigEndian.AppendUint64(nil, uint64(data.LastRevision)))
	err = snap.Iterate(func(k, v []byte) error {
		write(k)
		write(v)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return snap.Meta.Index, h.Sum64(), nil
}

// IndexTerm is the position of one Raft log entry.
type IndexTerm struct {
	Index, Term uint64
}

// CommittedTerms returns the index and term of committed log positions the
// replica still holds, from index from on, at most limit of them, in
// increasing index order. The truncated position (the last entry deleted by
// truncation or covered by a snapshot) is included when it is at or above
// from. Committed means at or below the persisted HardState's commit index:
// the entries at those indexes were persisted in the same or an earlier
// batch, so they are never an uncommitted tail that Raft is about to replace.
func (r *Replica) CommittedTerms(from uint64, limit int) ([]IndexTerm, error) {
	s := r.storage
	s.mu.Lock()
	commit := s.mu.hardState.Commit
	trunc := s.mu.truncated
	last := s.mu.lastIndex
	s.mu.Unlock()
	var out []IndexTerm
	if trunc.Index >= from && trunc.Index <= commit {
		out = append(out, IndexTerm{Index: trunc.Index, Term: trunc.Term})
	}
	lo := max(from, trunc.Index+1)
	hi := min(commit, last)
	if lo > hi || limit <= len(out) {
		return out, nil
	}
	hi = min(hi, lo+uint64(limit-len(out))-1)
	ents, err := s.Entries(lo, hi+1, math.MaxUint64)
	if errors.Is(err, raft.ErrCompacted) || errors.Is(err, raft.ErrUnavailable) {
		// Truncated or replaced by a snapshot since we looked: nothing to
		// report this time.
		return out, nil
	} else if err != nil {
		return nil, err
	}
	for _, e := range ents {
		out = append(out, IndexTerm{Index: e.Index, Term: e.Term})
	}
	return out, nil
}
