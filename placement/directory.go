package placement

import (
	"bytes"
	"fmt"
	"time"

	"github.com/google/btree"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// Entry is what the directory knows of one range.
type Entry struct {
	Desc            *pb.RangeDescriptor
	LeaderNodeID    uint64
	SizeBytes       int64
	WritesPerSecond float64
	ReportedAt      time.Time
}

func entryLess(a, b *Entry) bool { return bytes.Compare(a.Desc.StartKey, b.Desc.StartKey) < 0 }

// Directory is the range directory: entries ordered by start key, never
// overlapping. It is not safe for concurrent use.
type Directory struct {
	tree *btree.BTreeG[*Entry]
	byID map[uint64]*Entry
}

// NewDirectory returns an empty directory.
func NewDirectory() *Directory {
	return &Directory{tree: btree.NewG(16, entryLess), byID: map[uint64]*Entry{}}
}

// Update applies one range report. A report whose descriptor is older than
// what the directory holds for the range, or for a range it overlaps, is
// ignored; otherwise it replaces the range's entry and evicts the entries it
// overlaps. Reports of the same generation refresh leader, size and load; a
// report from a replica that is not the leader changes only what its
// descriptor says. It reports whether the report was applied.
func (d *Directory) Update(rep *pb.RangeReport, now time.Time) bool {
	desc := rep.Descriptor_
	if desc == nil {
		return false
	}
	overlapping := d.overlapping(desc)
	for _, e := range overlapping {
		if e.Desc.Generation > desc.Generation {
			return false
		}
		if e.Desc.RangeId == desc.RangeId && e.Desc.Generation == desc.Generation && !rep.IsLeader {
			// Same descriptor from a follower: it may not know the leader or
			// the load; keep the leader's numbers.
			return true
		}
	}
	if old, ok := d.byID[desc.RangeId]; ok && old.Desc.Generation > desc.Generation {
		return false
	}
	for _, e := range overlapping {
		d.remove(e)
	}
	if old, ok := d.byID[desc.RangeId]; ok {
		d.remove(old)
	}
	e := &Entry{Desc: desc, LeaderNodeID: rep.LeaderNodeId, SizeBytes: rep.SizeBytes, WritesPerSecond: rep.WritesPerSecond, ReportedAt: now}
	d.tree.ReplaceOrInsert(e)
	d.byID[desc.RangeId] = e
	return true
}

// Forget removes the entry of a range, if any.
func (d *Directory) Forget(rangeID uint64) {
	if e := d.byID[rangeID]; e != nil {
		d.remove(e)
	}
}

func (d *Directory) remove(e *Entry) {
	d.tree.Delete(e)
	if d.byID[e.Desc.RangeId] == e {
		delete(d.byID, e.Desc.RangeId)
	}
}

// overlapping returns the entries whose span intersects desc's.
func (d *Directory) overlapping(desc *pb.RangeDescriptor) []*Entry {
	var out []*Entry
	// The entry starting at or before desc.StartKey may reach into it.
	d.tree.DescendLessOrEqual(&Entry{Desc: &pb.RangeDescriptor{StartKey: desc.StartKey}}, func(e *Entry) bool {
		if len(e.Desc.EndKey) == 0 || bytes.Compare(e.Desc.EndKey, desc.StartKey) > 0 {
			out = append(out, e)
		}
		return false
	})
	d.tree.AscendGreaterOrEqual(&Entry{Desc: &pb.RangeDescriptor{StartKey: desc.StartKey}}, func(e *Entry) bool {
		if len(desc.EndKey) > 0 && bytes.Compare(e.Desc.StartKey, desc.EndKey) >= 0 {
			return false
		}
		if len(out) == 0 || out[len(out)-1] != e {
			out = append(out, e)
		}
		return true
	})
	return out
}

// Lookup returns the entry whose span holds key, or nil.
func (d *Directory) Lookup(key []byte) *Entry {
	var found *Entry
	d.tree.DescendLessOrEqual(&Entry{Desc: &pb.RangeDescriptor{StartKey: key}}, func(e *Entry) bool {
		found = e
		return false
	})
	if found == nil || (len(found.Desc.EndKey) > 0 && bytes.Compare(key, found.Desc.EndKey) >= 0) {
		return nil
	}
	return found
}

// SetLeader records a new leader for a range (after a transfer). Entries
// are never changed in place: callers read them without locks.
func (d *Directory) SetLeader(rangeID, leader uint64) {
	old := d.byID[rangeID]
	if old == nil {
		return
	}
	e := *old
	e.LeaderNodeID = leader
	d.tree.ReplaceOrInsert(&e)
	d.byID[rangeID] = &e
}

// RemovedReplica reports whether the directory shows that nodeID's replica
// of the range of desc (desc being what that replica holds) was removed
// from the range (replica.ReplicaRemoved on the directory's newer
// descriptor), and returns its replica ID.
func (d *Directory) RemovedReplica(desc *pb.RangeDescriptor, nodeID uint64) (uint64, bool) {
	id := replica.ReplicaIDOnNode(desc, nodeID)
	e := d.byID[desc.RangeId]
	if e == nil || e.Desc.Generation <= desc.Generation || !replica.ReplicaRemoved(e.Desc, id) {
		return 0, false
	}
	return id, true
}

// Range returns the entry of a range, or nil.
func (d *Directory) Range(id uint64) *Entry { return d.byID[id] }

// Entries returns every entry in key order.
func (d *Directory) Entries() []*Entry {
	out := make([]*Entry, 0, d.tree.Len())
	d.tree.Ascend(func(e *Entry) bool {
		out = append(out, e)
		return true
	})
	return out
}

// Check verifies that the entries do not overlap. If complete is set it
// also checks that they cover the whole key space without gaps.
func (d *Directory) Check(complete bool) error {
	var prev *Entry
	var err error
	d.tree.Ascend(func(e *Entry) bool {
		switch {
		case prev == nil:
			if complete && len(e.Desc.StartKey) != 0 {
				err = fmt.Errorf("first range %d starts at %q, not at the beginning", e.Desc.RangeId, e.Desc.StartKey)
			}
		case len(prev.Desc.EndKey) == 0 || bytes.Compare(prev.Desc.EndKey, e.Desc.StartKey) > 0:
			err = fmt.Errorf("ranges %d and %d overlap", prev.Desc.RangeId, e.Desc.RangeId)
		case complete && !bytes.Equal(prev.Desc.EndKey, e.Desc.StartKey):
			err = fmt.Errorf("gap between ranges %d and %d", prev.Desc.RangeId, e.Desc.RangeId)
		}
		prev = e
		return err == nil
	})
	if err == nil && complete && prev == nil {
		err = fmt.Errorf("the directory is empty")
	}
	if err == nil && complete && prev != nil && len(prev.Desc.EndKey) != 0 {
		err = fmt.Errorf("last range %d ends at %q, not at the end", prev.Desc.RangeId, prev.Desc.EndKey)
	}
	return err
}
