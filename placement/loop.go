package placement

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// actionTimeout bounds one move, transfer or split.
const actionTimeout = time.Minute

// Run decides and acts every Interval while this node leads placement, until
// ctx ends. Actions run in the background, at most Decide.MaxActions at a
// time and one per range.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Step(ctx); err != nil {
				s.cfg.Logger.Warn("placement round failed", "error", err)
			}
		}
	}
}

// Step runs one decision round.
func (s *Service) Step(ctx context.Context) error {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	ready := s.mu.leading && now.Sub(s.mu.leadSince) >= s.cfg.Grace
	s.mu.Unlock()
	if !ready {
		return nil
	}
	// Read the registry afresh each round: a Join or Leave may have been
	// served by another node that briefly also believed it led placement.
	if err := s.reload(ctx); err != nil {
		return err
	}
	nodes, err := s.nodes(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	var states []NodeState
	for _, n := range nodes {
		if n.State == pb.NodeRecord_DECOMMISSIONED {
			continue
		}
		seen := s.mu.lastSeen[n.NodeId]
		if seen.IsZero() {
			seen = s.mu.leadSince // not heard from since we lead: give it time
		}
		silent := now.Sub(seen)
		states = append(states, NodeState{ID: n.NodeId, State: n.State, Live: silent < s.cfg.LiveTimeout, Dead: silent >= s.cfg.DeadTimeout})
	}
	entries := s.mu.dir.Entries()
	busy := map[uint64]bool{}
	for id := range s.mu.inFlight {
		busy[id] = true
	}
	inFlight := len(s.mu.inFlight)
	s.mu.Unlock()

	s.finishDecommissions(ctx, nodes, entries)
	cfg := s.cfg.Decide
	cfg.MaxActions = max(0, cfg.MaxActions-inFlight)
	for _, a := range Decide(cfg, states, entries, busy) {
		s.start(ctx, a)
	}
	return nil
}

// finishDecommissions marks leaving nodes that hold no replica any more and
// are not the target of an action in flight.
func (s *Service) finishDecommissions(ctx context.Context, nodes map[uint64]*pb.NodeRecord, entries []*Entry) {
	held := map[uint64]bool{}
	for _, e := range entries {
		for _, r := range e.Desc.Replicas {
			held[r.NodeId] = true
		}
	}
	s.mu.Lock()
	for _, a := range s.mu.inFlight {
		held[a.To] = true // a move onto the node would give it a replica
	}
	s.mu.Unlock()
	for _, n := range nodes {
		if n.State != pb.NodeRecord_DECOMMISSIONING || held[n.NodeId] {
			continue
		}
		_, err := s.updateNode(ctx, n.NodeId, func(cur *pb.NodeRecord) *pb.NodeRecord {
			if cur == nil || cur.State != pb.NodeRecord_DECOMMISSIONING {
				return nil
			}
			next := proto.Clone(cur).(*pb.NodeRecord)
			next.State = pb.NodeRecord_DECOMMISSIONED
			return next
		})
		if err != nil {
			s.cfg.Logger.Warn("mark node decommissioned", "node_id", n.NodeId, "error", err)
			continue
		}
		s.mu.Lock()
		s.mu.stale.forget(n.NodeId)
		s.mu.Unlock()
		s.cfg.Logger.Info("node decommissioned", "node_id", n.NodeId)
	}
}

func (s *Service) start(ctx context.Context, a Action) {
	s.mu.Lock()
	s.mu.inFlight[a.RangeID] = a
	s.mu.Unlock()
	s.cfg.Logger.Info("placement action", "action", a.Kind.String(), "range", a.RangeID, "from", a.From, "to", a.To, "reason", a.Reason)
	go func() {
		actx, cancel := context.WithTimeout(ctx, actionTimeout)
		defer cancel()
		var err error
		var descs []*pb.RangeDescriptor
		switch a.Kind {
		case Move:
			var d *pb.RangeDescriptor
			d, err = s.cfg.Actuator.MoveReplica(actx, a.RangeID, a.From, a.To)
			descs = append(descs, d)
		case TransferLeader:
			if err = s.cfg.Actuator.TransferLeader(actx, a.RangeID, a.To); err == nil {
				s.mu.Lock()
				s.mu.dir.SetLeader(a.RangeID, a.To)
				s.mu.Unlock()
			}
		case Split:
			var l, r *pb.RangeDescriptor
			l, r, err = s.cfg.Actuator.SplitRange(actx, a.RangeID)
			descs = append(descs, l, r)
		}
		if err == nil {
			// Reflect the change now; the leader's next heartbeat confirms it
			// (and names the leader, unknown here after a move).
			now := s.cfg.Clock.Now()
			s.mu.Lock()
			for _, d := range descs {
				if d == nil {
					continue
				}
				// Keep the leader we knew if it is still a member; a split's
				// right-hand range is led, at first, by the left's leader.
				var leader uint64
				if e := s.mu.dir.Range(a.RangeID); e != nil && hasReplicaOn(&Entry{Desc: d}, e.LeaderNodeID) {
					leader = e.LeaderNodeID
				}
				s.mu.dir.Update(&pb.RangeReport{Descriptor_: d, IsLeader: true, LeaderNodeId: leader}, now)
			}
			s.mu.Unlock()
		}
		if err != nil {
			s.cfg.Logger.Warn("placement action failed", "action", a.Kind.String(), "range", a.RangeID, "error", err)
		}
		s.mu.Lock()
		delete(s.mu.inFlight, a.RangeID)
		s.mu.Unlock()
	}()
}
