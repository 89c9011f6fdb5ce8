package replica

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/confchange"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// OutgoingSnapshot is a consistent view of a range for sending to a follower
// that is behind the truncated log. Its metadata comes from the same Pebble
// snapshot as its data, so they always agree.
type OutgoingSnapshot struct {
	Meta       raftpb.SnapshotMetadata
	Data       []byte // a marshalled SnapshotData
	Descriptor *pb.RangeDescriptor
	snap       *pebble.Snapshot
}

// OpenSnapshot captures the replica's current applied state. The caller must
// Close it.
func (r *Replica) OpenSnapshot() (*OutgoingSnapshot, error) {
	snap := r.cfg.DB.NewSnapshot()
	applied := &pb.AppliedState{}
	desc := &pb.RangeDescriptor{}
	if _, err := getProto(snap, AppliedStateKey(r.rangeID), applied); err != nil {
		snap.Close()
		return nil, err
	}
	if _, err := getProto(snap, DescriptorKey(r.rangeID), desc); err != nil {
		snap.Close()
		return nil, err
	}
	var cs raftpb.ConfState
	if err := cs.Unmarshal(applied.ConfState); err != nil {
		snap.Close()
		return nil, err
	}
	data, err := proto.Marshal(&pb.SnapshotData{Descriptor_: desc, LastRevision: applied.LastRevision})
	if err != nil {
		snap.Close()
		return nil, err
	}
	return &OutgoingSnapshot{
		Meta:       raftpb.SnapshotMetadata{Index: applied.Index, Term: applied.Term, ConfState: cs},
		Data:       data,
		Descriptor: desc,
		snap:       snap,
	}, nil
}

// Iterate calls fn with every engine key and value of the range's user span.
// fn must not keep the slices after it returns.
func (o *OutgoingSnapshot) Iterate(fn func(key, value []byte) error) error {
	for _, span := range rangeSpans(o.Descriptor.StartKey, o.Descriptor.EndKey) {
		if err := iterateSpan(o.snap, span, fn); err != nil {
			return err
		}
	}
	return nil
}

func iterateSpan(r pebble.Reader, span [2][]byte, fn func(key, value []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: span[0], UpperBound: span[1]})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// inSpans reports whether key lies in one of spans.
func inSpans(key []byte, spans [][2][]byte) bool {
	for _, s := range spans {
		if bytes.Compare(key, s[0]) >= 0 && bytes.Compare(key, s[1]) < 0 {
			return true
		}
	}
	return false
}

// Close releases the Pebble snapshot.
func (o *OutgoingSnapshot) Close() { o.snap.Close() }

// ReceiveSnapshot hands a streamed snapshot to Raft. m is the MsgSnap with
// the metadata; kvs are the range's user keys. The data is kept until Raft
// returns the snapshot in a Ready and is then installed atomically with the
// Raft state (PersistAppend). Raft may also reject a stale snapshot.
func (r *Replica) ReceiveSnapshot(m raftpb.Message, kvs []*pb.EngineKV) error {
	if m.Type != raftpb.MsgSnap || m.Snapshot == nil {
		return fmt.Errorf("range %d: not a snapshot message: %s", r.rangeID, m.Type)
	}
	data := &pb.SnapshotData{}
	if err := proto.Unmarshal(m.Snapshot.Data, data); err != nil {
		return fmt.Errorf("range %d: decode snapshot data: %w", r.rangeID, err)
	}
	if data.Descriptor_ == nil || data.Descriptor_.RangeId != r.rangeID {
		return fmt.Errorf("range %d: snapshot is for another range", r.rangeID)
	}
	if err := validConfState(m.Snapshot.Metadata.ConfState); err != nil {
		return fmt.Errorf("range %d: snapshot: %w", r.rangeID, err)
	}
	spans := rangeSpans(data.Descriptor_.StartKey, data.Descriptor_.EndKey)
	for _, kv := range kvs {
		if !inSpans(kv.Key, spans) {
			return fmt.Errorf("range %d: snapshot key %x outside the range", r.rangeID, kv.Key)
		}
	}
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return ErrRemoved
	}
	// Keyed by index: Raft may reject this snapshot (a newer one it already
	// accepted is still waiting in a Ready) and must then find the data of
	// the one it accepted. Data at or below the applied index is useless.
	applied := r.storage.Applied().Index
	for idx := range r.mu.incoming {
		if idx <= applied {
			delete(r.mu.incoming, idx)
		}
	}
	index := m.Snapshot.Metadata.Index
	r.mu.incoming[index] = &incomingSnapshot{index: index, data: data, kvs: kvs}
	r.setQuiescedLocked(false)
	err := r.mu.rn.Step(m)
	r.mu.Unlock()
	r.cfg.Notify()
	return err
}

// persistSnapshot writes a snapshot that Raft accepted into b: it replaces
// the range's user data and its log, and sets the applied and truncated
// state to the snapshot's position.
func (r *Replica) persistSnapshot(b *pebble.Batch, snap raftpb.Snapshot) error {
	r.mu.Lock()
	in := r.mu.incoming[snap.Metadata.Index]
	r.mu.Unlock()
	if in == nil {
		return fmt.Errorf("range %d: raft applied snapshot %d with no data received", r.rangeID, snap.Metadata.Index)
	}
	// The snapshot replaces the range's user data and transaction records,
	// which the record cache and the record index hold; nothing else of this
	// range is applied before the batch commits.
	r.cfg.Records.Clear()
	old := r.storage.Descriptor()
	for _, d := range []*pb.RangeDescriptor{old, in.data.Descriptor_} {
		for _, span := range rangeSpans(d.StartKey, d.EndKey) {
			if err := b.DeleteRange(span[0], span[1], nil); err != nil {
				return err
			}
		}
	}
	if err := b.DeleteRange(LogKey(r.rangeID, 0), rangeLocalKey(r.rangeID, suffixLog+1), nil); err != nil {
		return err
	}
	for _, kv := range in.kvs {
		if err := b.Set(kv.Key, kv.Value, nil); err != nil {
			return err
		}
	}
	r.cfg.TxnRecords.ReplaceSpan([]*pb.RangeDescriptor{old, in.data.Descriptor_}, in.kvs)
	cs, err := snap.Metadata.ConfState.Marshal()
	if err != nil {
		return err
	}
	if err := putProto(b, TruncatedStateKey(r.rangeID), &pb.TruncatedState{Index: snap.Metadata.Index, Term: snap.Metadata.Term}); err != nil {
		return err
	}
	applied := &pb.AppliedState{Index: snap.Metadata.Index, Term: snap.Metadata.Term, LastRevision: in.data.LastRevision, ConfState: cs}
	if err := putProto(b, AppliedStateKey(r.rangeID), applied); err != nil {
		return err
	}
	return putProto(b, DescriptorKey(r.rangeID), in.data.Descriptor_)
}

// markSnapshotApplied updates the cached state after a snapshot's batch has
// been committed.
func (r *Replica) markSnapshotApplied(snap raftpb.Snapshot) {
	r.mu.Lock()
	in := r.mu.incoming[snap.Metadata.Index]
	for idx := range r.mu.incoming {
		if idx <= snap.Metadata.Index {
			delete(r.mu.incoming, idx)
		}
	}
	r.mu.Unlock()
	cs, _ := snap.Metadata.ConfState.Marshal()
	s := r.storage
	s.mu.Lock()
	s.mu.truncated = &pb.TruncatedState{Index: snap.Metadata.Index, Term: snap.Metadata.Term}
	s.mu.lastIndex = snap.Metadata.Index
	s.mu.cache.clear()
	s.mu.applied = &pb.AppliedState{Index: snap.Metadata.Index, Term: snap.Metadata.Term, LastRevision: in.data.LastRevision, ConfState: cs}
	s.mu.confState = snap.Metadata.ConfState
	s.mu.desc = in.data.Descriptor_
	s.mu.Unlock()
	r.mu.Lock()
	r.notifyAppliedLocked(snap.Metadata.Index)
	r.mu.Unlock()
	r.logger.Info("installed snapshot", "index", snap.Metadata.Index, "keys", len(in.kvs))
}

// validConfState checks a configuration received from a peer the way Raft
// will when it installs the snapshot, but on a throwaway tracker: Raft
// panics on an invalid one, and a peer's bad bytes must not take the node
// down.
func validConfState(cs raftpb.ConfState) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("invalid configuration %v: %v", cs, p)
		}
	}()
	trk := tracker.MakeProgressTracker(1, 0)
	cfg, prs, err := confchange.Restore(confchange.Changer{Tracker: trk, LastIndex: 1}, cs)
	if err != nil {
		return fmt.Errorf("invalid configuration %v: %w", cs, err)
	}
	trk.Config, trk.Progress = cfg, prs
	if err := cs.Equivalent(trk.ConfState()); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	if len(cs.Voters) == 0 {
		return fmt.Errorf("invalid configuration %v: no voters", cs)
	}
	return nil
}
