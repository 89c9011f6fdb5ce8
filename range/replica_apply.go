package replica

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Applying committed entries is split in two so that a node can apply the
// Readies of many replicas in one engine batch, committed once:
//
//	b := db.NewIndexedBatch()
//	staged, _ := r.StageApply(b, rd.Apply)  // for each replica
//	b.Commit(pebble.NoSync)
//	more, _ := staged.Finish()              // for each replica
//
// Replicas never share a key (user keys and transaction records lie in
// their disjoint spans, Raft state under their range ID), so one replica's
// writes in the shared batch never change what another reads. The batch
// need not be synced: the entries are durable in the log (raft hands out
// for apply only entries whose append this replica has acknowledged), and
// apply is idempotent, so a crash that loses it re-applies them.

// StagedApply is an apply whose committed entries have been written into a
// batch that is not committed yet.
type StagedApply struct {
	r       *Replica
	apply   *raftpb.Message  // the caller's MsgStorageApply, kept until Finish
	applied *pb.AppliedState // nil: the Ready commits no new entry
	desc    *pb.RangeDescriptor
	splits  []*pb.RangeDescriptor
	done    []completedProposal
	removed bool
}

type completedProposal struct {
	id  uint64
	res Result
}

// StageApply writes the effects of an apply's committed entries (a
// Ready's Apply, nil if it has none), and the new applied state, into b, an
// indexed batch. After committing b the caller must call Finish, and must
// not change apply before.
func (r *Replica) StageApply(b *pebble.Batch, apply *raftpb.Message) (*StagedApply, error) {
	s := &StagedApply{r: r, apply: apply}
	if apply == nil || len(apply.Entries) == 0 {
		return s, nil
	}
	// A field-by-field copy, not proto.Clone (reflection: 1.2% of the nodes'
	// CPU under puts). ConfState's bytes are shared: apply replaces the
	// slice, never writes into it.
	prev := r.storage.Applied()
	applied := &pb.AppliedState{Index: prev.Index, Term: prev.Term, LastRevision: prev.LastRevision, ConfState: prev.ConfState}
	sm := &stateMachine{b: b, records: r.cfg.Records, txnRecords: r.cfg.TxnRecords, desc: r.storage.Descriptor(), lastRevision: applied.LastRevision}
	for i := range apply.Entries {
		e := &apply.Entries[i]
		if e.Index <= applied.Index {
			continue // already applied, e.g. covered by a snapshot
		}
		switch e.Type {
		case raftpb.EntryNormal:
			if len(e.Data) > 0 {
				cmd := &pb.RaftCommand{}
				if err := cmd.UnmarshalVT(e.Data); err != nil {
					return nil, fmt.Errorf("range %d: decode entry %d: %w", r.rangeID, e.Index, err)
				}
				s.done = append(s.done, completedProposal{id: cmd.ProposalId, res: sm.apply(cmd)})
				r.writes.Add(1)
			}
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			cs, next, p, err := r.applyConfChangeEntry(e, sm.desc)
			if err != nil {
				return nil, err
			}
			if applied.ConfState, err = cs.Marshal(); err != nil {
				return nil, err
			}
			if next != sm.desc {
				if err := putProto(b, DescriptorKey(r.rangeID), next); err != nil {
					return nil, err
				}
				sm.desc = next
			}
			if p != nil {
				s.done = append(s.done, *p)
			}
			s.removed = !inConfState(cs, r.replicaID)
		}
		applied.Index, applied.Term = e.Index, e.Term
	}
	applied.LastRevision = sm.lastRevision
	if err := putProto(b, AppliedStateKey(r.rangeID), applied); err != nil {
		return nil, err
	}
	s.applied, s.desc, s.splits = applied, sm.desc, sm.splits
	if !s.removed {
		if err := r.stageTruncation(b, prev.Index); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Finish completes a staged apply once its batch is committed: it updates
// the replica's cached state, opens split-off ranges, answers the waiting
// proposals and readers, truncates the log if it has grown, and tells
// Raft the entries are applied. It reports whether the replica has another
// Ready.
func (s *StagedApply) Finish() (bool, error) {
	r := s.r
	if s.applied != nil {
		if err := r.storage.setApplied(s.applied); err != nil {
			return false, err
		}
		if s.desc != r.storage.Descriptor() {
			r.storage.setDescriptor(s.desc)
		}
		for _, right := range s.splits {
			r.cfg.OnSplit(s.desc, right)
		}
		if s.removed {
			r.cfg.OnRemoved(r.rangeID, r.replicaID)
		}
		r.mu.Lock()
		for _, p := range s.done {
			if ch, ok := r.mu.proposals[p.id]; ok {
				ch <- p.res
				delete(r.mu.proposals, p.id)
			}
		}
		r.notifyAppliedLocked(s.applied.Index)
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return false, nil
	}
	if s.apply != nil {
		for _, m := range s.apply.Responses {
			if err := r.mu.rn.Step(m); err != nil {
				return false, fmt.Errorf("range %d: step apply response: %w", r.rangeID, err)
			}
		}
	}
	return r.mu.rn.HasReady(), nil
}

// Apply applies an apply's committed entries in a batch of their own
// (StageApply, commit, Finish), for a caller handling one replica.
func (r *Replica) Apply(apply *raftpb.Message) (bool, error) {
	b := r.cfg.DB.NewIndexedBatch()
	defer b.Close()
	s, err := r.StageApply(b, apply)
	if err != nil {
		return false, err
	}
	if !b.Empty() {
		if err := b.Commit(pebble.NoSync); err != nil {
			return false, fmt.Errorf("range %d: commit apply batch: %w", r.rangeID, err)
		}
	}
	return s.Finish()
}

// stageTruncation deletes applied log entries in b, the apply batch, once
// more than the threshold have accumulated, keeping half of the threshold
// so that a briefly slow follower catches up from the log rather than by
// snapshot; a leader also keeps what a follower it is replicating to, and
// has heard from within an election timeout, still lacks, up to
// maxLogForFollowers entries (a follower cut off for longer gets a snapshot,
// as before). In the apply batch the truncation costs no commit of its own,
// so the log can be truncated often enough that most entries die in the
// memtable with their deletion, before a flush writes them to the engine's
// tables.
//
// applied is the index applied before this apply, which raft has seen
// applied: the entries this apply applies are not truncated with it, for
// until its response is stepped raft may still read them (a campaign scans
// the entries it has not seen applied for configuration changes, and
// panics if they are gone: found by make test-kill, where a restarted
// follower applied 93 entries in one Ready; TestTruncationSparesEntriesBeingApplied).
//
// The replica's log is marked truncated before b is committed: from then
// on raft asks no more for those entries (it would send a snapshot), so it
// never reads the log while the commit deletes them. Entry reads happen
// under mu, which this holds.
func (r *Replica) stageTruncation(b *pebble.Batch, applied uint64) error {
	first, _ := r.storage.Bounds()
	threshold := r.cfg.LogTruncateThreshold
	if applied < first || applied-first+1 <= threshold {
		return nil
	}
	index := applied - threshold/2
	r.mu.Lock()
	defer r.mu.Unlock()
	// A closed replica (its node is stopping) truncates nothing more. One
	// the node destroys is still open here: the node waits out this
	// scheduler round (waitIdle) before destroying it, so the batch
	// commits before its data goes.
	if r.mu.closed {
		return nil
	}
	if r.mu.rn.BasicStatus().RaftState == raft.StateLeader {
		floor := uint64(0)
		if applied > maxLogForFollowers {
			floor = applied - maxLogForFollowers
		}
		r.mu.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			if id != r.replicaID && pr.RecentActive && pr.State == tracker.StateReplicate && pr.Match < index {
				index = max(pr.Match, floor)
			}
		})
		if index < first {
			return nil
		}
	}
	t, err := r.storage.truncateTo(b, index)
	if err != nil {
		return err
	}
	r.storage.markTruncated(t)
	return nil
}

// maxLogForFollowers bounds how far behind the applied index a leader keeps
// its log for a follower that is behind: one further back is sent a
// snapshot.
const maxLogForFollowers = 1000
