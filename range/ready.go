package replica

import (
	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Replicas run Raft with asynchronous storage writes (raft.Config's
// AsyncStorageWrites): a Ready does not wait for the previous one's log
// write to be synced. What a Ready asks of storage comes as two local
// messages beside the ones for other replicas:
//
//   - an append (MsgStorageAppend): entries, hard state and snapshot to
//     write, and the responses that may be delivered only once they are
//     durable: this replica's acknowledgements of appends and its votes, to
//     other replicas, and the acknowledgement to itself that the entries
//     are stable;
//   - an apply (MsgStorageApply): committed entries to apply, and the
//     response to step once they are.
//
// Raft hands out for apply only entries whose append has been acknowledged
// as durable here, so applying never gets ahead of this replica's own log.
// A leader counts its own log towards a commit only once its own append is
// acknowledged. Appends must be made durable, and their responses
// delivered, in the order of the Readies; so must applies.
//
// The node writes the appends of a round of Readies in one batch, makes it
// visible at once (MarkAppended), and syncs it while it goes on with the
// next round; a goroutine waits for each batch's sync, in order, and then
// delivers its responses (DeliverLocal). One replica's round:
//
//	rd, ok := r.Ready()
//	send(rd.Messages)                          // at once
//	sync, _ := r.PersistAppend(batch, rd.Append)
//	db.ApplyNoSyncWait(batch, pebble.Sync)     // shared by many replicas
//	r.MarkAppended(rd.Append)
//	later, once batch.SyncWait() returns:
//		send(r.DeliverLocal(rd.Append.Responses))
//	staged, _ := r.StageApply(applyBatch, rd.Apply)
//	applyBatch.Commit(pebble.NoSync)
//	staged.Finish()                            // steps rd.Apply's response

// Ready is the work one Raft Ready asks of the node.
type Ready struct {
	// Messages are for other replicas; none depends on this replica's
	// unsynced state, so they may be sent at once.
	Messages []raftpb.Message
	// Append is the MsgStorageAppend, or nil.
	Append *raftpb.Message
	// Apply is the MsgStorageApply, or nil.
	Apply *raftpb.Message
}

// Ready returns the replica's pending Ready, if any. Its Append and Apply
// must be handled in order with those of earlier Readies (see above); a
// replica's next Ready may be taken before this one's append is durable.
func (r *Replica) Ready() (Ready, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return Ready{}, false
	}
	r.flushProposalsLocked()
	r.sendQueuedReadsLocked()
	if !r.mu.rn.HasReady() {
		return Ready{}, false
	}
	rd := r.mu.rn.Ready()
	r.mu.notices.sawEntries(rd.Entries)
	if r.mu.rn.BasicStatus().RaftState == raft.StateLeader {
		rd.Messages = r.dropCommitNoticesLocked(rd.Messages)
	}
	if rd.SoftState != nil && rd.SoftState.Lead != r.mu.leader {
		r.mu.leader = rd.SoftState.Lead
		r.logger.Debug("leader changed", "leader", rd.SoftState.Lead, "state", rd.SoftState.RaftState.String())
		if rd.SoftState.RaftState != raft.StateLeader {
			r.failPendingLocked()
		}
	}
	for _, rs := range rd.ReadStates {
		req, ok := r.mu.reads[string(rs.RequestCtx)]
		if !ok {
			continue
		}
		r.extendLeaseLocked(req)
		for _, ch := range req.reads {
			ch <- rs.Index
		}
		delete(r.mu.reads, string(rs.RequestCtx))
	}
	return splitReady(rd.Messages), true
}

// splitReady separates the local storage messages, which raft puts last,
// from the ones for other replicas.
func splitReady(msgs []raftpb.Message) Ready {
	var out Ready
	for len(msgs) > 0 {
		m := &msgs[len(msgs)-1]
		switch m.To {
		case raft.LocalAppendThread:
			out.Append = m
		case raft.LocalApplyThread:
			out.Apply = m
		default:
			out.Messages = msgs
			return out
		}
		msgs = msgs[:len(msgs)-1]
	}
	return out
}

// PersistAppend writes an append's snapshot, entries and hard state into b,
// and reports whether b must be synced before the append's responses are
// delivered: it must if the append installs a snapshot, writes entries, or
// changes the term or vote. An append may carry responses and nothing to
// write (an acknowledgement of entries already written); they still wait
// for every earlier append to be durable. The caller commits b, possibly
// with other replicas' appends, and then calls MarkAppended.
func (r *Replica) PersistAppend(b *pebble.Batch, app *raftpb.Message) (mustSync bool, err error) {
	if app == nil {
		return false, nil
	}
	afterSnapshot := false
	if app.Snapshot != nil && !raft.IsEmptySnap(*app.Snapshot) {
		if err := r.persistSnapshot(b, *app.Snapshot); err != nil {
			return false, err
		}
		afterSnapshot = true
	}
	if err := r.storage.appendEntries(b, app.Entries, afterSnapshot); err != nil {
		return false, err
	}
	mustSync = afterSnapshot || len(app.Entries) > 0
	hs := appendHardState(app)
	if raft.IsEmptyHardState(hs) {
		return mustSync, nil
	}
	r.storage.mu.Lock()
	prev := r.storage.mu.hardState
	r.storage.mu.Unlock()
	// A HardState that only moves the commit index is not written, nor
	// synced: the commit index is volatile state in Raft, and on start the
	// replica takes it as at least its applied index (LoadStorage), which
	// is durable with the applied entries. Under load nearly every round
	// moves it, on every replica of every range: one write fewer per range
	// per round.
	if afterSnapshot || hs.Term != prev.Term || hs.Vote != prev.Vote {
		return true, setHardState(b, r.rangeID, hs)
	}
	return mustSync, nil
}

// appendHardState is the hard state an append carries (empty if none).
func appendHardState(app *raftpb.Message) raftpb.HardState {
	return raftpb.HardState{Term: app.Term, Vote: app.Vote, Commit: app.Commit}
}

// MarkAppended updates the replica's cached view once the batch written by
// PersistAppend has been committed (visible; not necessarily synced yet:
// raft reads no entry of an append before its response is delivered).
func (r *Replica) MarkAppended(app *raftpb.Message) {
	if app == nil {
		return
	}
	if app.Snapshot != nil && !raft.IsEmptySnap(*app.Snapshot) {
		r.markSnapshotApplied(*app.Snapshot)
	}
	r.storage.markAppended(app.Entries, appendHardState(app))
}

// DeliverLocal steps the responses addressed to this replica (the
// acknowledgements of its own storage) and returns the others, for the
// caller to send. Call it with an append's responses once the append is
// durable. It tells the node (Notify) when raft may have new work: a
// leader's acknowledgement of its own entries may commit them. A closed
// replica delivers nothing. The remote messages are returned in msgs's
// own array (the responses belong to the caller's Ready, read once).
func (r *Replica) DeliverLocal(msgs []raftpb.Message) (remote []raftpb.Message) {
	stepped := false
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return nil
	}
	remote = msgs[:0]
	for i := range msgs {
		if msgs[i].To != r.replicaID {
			remote = append(remote, msgs[i]) // never ahead of i
			continue
		}
		// ErrStepPeerNotFound: the replica's own acknowledgement after a
		// configuration change removed it; raft expects it dropped.
		if err := r.mu.rn.Step(msgs[i]); err != nil && err != raft.ErrStepPeerNotFound {
			r.logger.Warn("step local response", "type", msgs[i].Type, "error", err)
		}
		stepped = true
	}
	r.mu.Unlock()
	if stepped {
		r.cfg.Notify()
	}
	return remote
}
