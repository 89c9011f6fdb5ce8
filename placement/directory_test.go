package placement

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestDirectory walks testdata/directory/*.txt. Each script feeds range
// reports to one Directory. After every command the directory's index by
// range ID is checked against its tree. Commands:
//
//	report id=<n> start=<key> end=<key> gen=<g> [replicas=<n>,...] [leader=<n>]
//	       [is-leader] [size=<b>] [wps=<f>] [at=<seconds>]
//	    Update with one report; prints applied or ignored, then the entries.
//	    (report with no id sends a report without a descriptor.)
//	insert-raw id=<n> start=<key> end=<key> [gen=<g>]
//	    puts an entry in the tree directly, bypassing Update (to build
//	    overlaps for check).
//	lookup key=<key>        the entry holding key, or none
//	range id=<n>            the entry of a range, or none
//	check [complete]        Check(complete)
//	entries                 every entry in key order
//	skip                    a known bug, as in TestDecide
func TestDirectory(t *testing.T) {
	datadriven.Walk(t, "testdata/directory", func(t *testing.T, path string) {
		dir := NewDirectory()
		t0 := time.Unix(1_000_000, 0)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out := handleDirectory(t, d, dir, t0)
			if d.Cmd != "insert-raw" {
				checkDirectoryIndex(t, d, dir)
			}
			return out
		})
	})
}

func handleDirectory(t *testing.T, d *datadriven.TestData, dir *Directory, t0 time.Time) string {
	switch d.Cmd {
	case "report":
		rep := &pb.RangeReport{}
		if d.HasArg("id") {
			rep.Descriptor_ = scanDesc(t, d)
		}
		d.MaybeScanArgs(t, "leader", &rep.LeaderNodeId)
		rep.IsLeader = d.HasArg("is-leader")
		d.MaybeScanArgs(t, "size", &rep.SizeBytes)
		d.MaybeScanArgs(t, "wps", &rep.WritesPerSecond)
		var at int
		d.MaybeScanArgs(t, "at", &at)
		verdict := "ignored"
		if dir.Update(rep, t0.Add(time.Duration(at)*time.Second)) {
			verdict = "applied"
		}
		return verdict + "\n" + formatDirectory(dir, t0)
	case "insert-raw":
		e := &Entry{Desc: scanDesc(t, d), ReportedAt: t0}
		dir.tree.ReplaceOrInsert(e)
		dir.byID[e.Desc.RangeId] = e
		return formatDirectory(dir, t0)
	case "lookup":
		var key string
		d.ScanArgs(t, "key", &key)
		return formatDirEntry(dir.Lookup([]byte(key)), t0)
	case "range":
		var id uint64
		d.ScanArgs(t, "id", &id)
		return formatDirEntry(dir.Range(id), t0)
	case "check":
		if err := dir.Check(d.HasArg("complete")); err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	case "entries":
		return formatDirectory(dir, t0)
	case "skip":
		return skipKnownBugScript(t, d)
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
		return ""
	}
}

func scanDesc(t *testing.T, d *datadriven.TestData) *pb.RangeDescriptor {
	var id uint64
	var start, end string
	d.ScanArgs(t, "id", &id)
	d.ScanArgs(t, "start", &start)
	d.ScanArgs(t, "end", &end)
	gen := uint64(1)
	d.MaybeScanArgs(t, "gen", &gen)
	replicas := scanIDs(t, d, "replicas")
	if replicas == nil {
		replicas = []uint64{1, 2, 3}
	}
	return newDesc(id, start, end, replicas, nil, gen)
}

// checkDirectoryIndex checks that byID indexes exactly the tree's entries.
func checkDirectoryIndex(t *testing.T, d *datadriven.TestData, dir *Directory) {
	t.Helper()
	entries := dir.Entries()
	if len(entries) != len(dir.byID) {
		t.Errorf("%s: %d entries in the tree, %d in byID", d.Pos, len(entries), len(dir.byID))
	}
	for _, e := range entries {
		if dir.Range(e.Desc.RangeId) != e {
			t.Errorf("%s: byID[%d] is not the tree's entry", d.Pos, e.Desc.RangeId)
		}
	}
}

func formatDirEntry(e *Entry, t0 time.Time) string {
	if e == nil {
		return "none"
	}
	var nodes []string
	for _, r := range e.Desc.Replicas {
		nodes = append(nodes, fmt.Sprint(r.NodeId))
	}
	return fmt.Sprintf("r%d [%s,%s) gen=%d replicas=%s leader=%d size=%d wps=%g at=%s",
		e.Desc.RangeId, e.Desc.StartKey, e.Desc.EndKey, e.Desc.Generation, strings.Join(nodes, ","),
		e.LeaderNodeID, e.SizeBytes, e.WritesPerSecond, e.ReportedAt.Sub(t0))
}

func formatDirectory(dir *Directory, t0 time.Time) string {
	entries := dir.Entries()
	if len(entries) == 0 {
		return "(empty)"
	}
	var lines []string
	for _, e := range entries {
		lines = append(lines, formatDirEntry(e, t0))
	}
	return strings.Join(lines, "\n")
}

// TestDirectoryReportsInAnyOrder builds random histories of splits and
// replica moves from one range covering everything, then feeds every
// descriptor that ever existed (each as a leader's and a follower's report)
// in random order. Whatever the order, the directory must end with exactly
// the latest descriptors, covering the key space.
func TestDirectoryReportsInAnyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for run := range 500 {
		latest := map[uint64]*pb.RangeDescriptor{1: newDesc(1, "", "", []uint64{1, 2, 3}, nil, 1)}
		var history []*pb.RangeDescriptor
		history = append(history, latest[1])
		nextID := uint64(2)
		for range 1 + rng.IntN(30) {
			ids := sortedKeys(latest)
			old := latest[ids[rng.IntN(len(ids))]]
			if rng.IntN(2) == 0 {
				// A move: two descriptor changes (learner, then voter).
				d := proto.Clone(old).(*pb.RangeDescriptor)
				d.Generation += 2
				d.Replicas[rng.IntN(len(d.Replicas))].NodeId = 10 + uint64(rng.IntN(90))
				latest[d.RangeId] = d
				history = append(history, d)
				continue
			}
			// A split at a key strictly inside the span.
			mid := midKey(old.StartKey, old.EndKey)
			left := proto.Clone(old).(*pb.RangeDescriptor)
			left.EndKey, left.Generation = mid, old.Generation+1
			right := proto.Clone(left).(*pb.RangeDescriptor)
			right.RangeId, right.StartKey, right.EndKey = nextID, mid, old.EndKey
			nextID++
			latest[left.RangeId], latest[right.RangeId] = left, right
			history = append(history, left, right)
		}
		var reports []*pb.RangeReport
		for _, d := range history {
			reports = append(reports, &pb.RangeReport{Descriptor_: d, IsLeader: true, LeaderNodeId: d.Replicas[0].NodeId},
				&pb.RangeReport{Descriptor_: d, LeaderNodeId: d.Replicas[0].NodeId})
		}
		rng.Shuffle(len(reports), func(i, j int) { reports[i], reports[j] = reports[j], reports[i] })
		dir := NewDirectory()
		for _, r := range reports {
			dir.Update(r, time.Time{})
			if err := dir.Check(false); err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
		}
		if err := dir.Check(true); err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, formatDirectory(dir, time.Time{}))
		}
		entries := dir.Entries()
		if len(entries) != len(latest) {
			t.Fatalf("run %d: %d entries, want %d\n%s", run, len(entries), len(latest), formatDirectory(dir, time.Time{}))
		}
		for _, e := range entries {
			if want := latest[e.Desc.RangeId]; !proto.Equal(e.Desc, want) {
				t.Fatalf("run %d: r%d is %v, want %v", run, e.Desc.RangeId, e.Desc, want)
			}
		}
	}
}

// TestDirectoryRemovedReplica: a replica is reported removed only when the
// directory holds a newer descriptor that allocated its ID and no longer
// lists it.
func TestDirectoryRemovedReplica(t *testing.T) {
	desc := func(gen, next uint64, replicas ...[2]uint64) *pb.RangeDescriptor {
		d := &pb.RangeDescriptor{RangeId: 7, StartKey: []byte("a"), EndKey: []byte("m"), Generation: gen, NextReplicaId: next}
		for _, r := range replicas {
			d.Replicas = append(d.Replicas, &pb.ReplicaDescriptor{NodeId: r[0], ReplicaId: r[1]})
		}
		return d
	}
	dir := NewDirectory()
	now := time.Unix(1_000_000, 0)
	// Node 2's replica 2 was moved to node 4 (replica 4).
	current := desc(5, 5, [2]uint64{1, 1}, [2]uint64{3, 3}, [2]uint64{4, 4})
	if !dir.Update(&pb.RangeReport{Descriptor_: current, IsLeader: true, LeaderNodeId: 1}, now) {
		t.Fatal("current descriptor not applied")
	}
	stale := desc(3, 4, [2]uint64{1, 1}, [2]uint64{2, 2}, [2]uint64{3, 3})
	if id, ok := dir.RemovedReplica(stale, 2); !ok || id != 2 {
		t.Fatalf("node 2 holding generation 3: removed = %d, %v; want replica 2", id, ok)
	}
	// Its report of the old descriptor does not change the directory.
	if dir.Update(&pb.RangeReport{Descriptor_: stale, IsLeader: true, LeaderNodeId: 2}, now) {
		t.Fatal("a stale report was applied")
	}
	for _, c := range []struct {
		name string
		desc *pb.RangeDescriptor
		node uint64
	}{
		{"a member with an old descriptor", stale, 1},
		{"a member with the current descriptor", current, 4},
		{"a replica the directory has not seen allocated", desc(6, 7, [2]uint64{1, 1}, [2]uint64{3, 3}, [2]uint64{4, 4}, [2]uint64{2, 6}), 2},
		{"a node the descriptor does not name", stale, 9},
		{"a range the directory does not know", &pb.RangeDescriptor{RangeId: 8, Generation: 1, NextReplicaId: 4, Replicas: stale.Replicas}, 2},
	} {
		if id, ok := dir.RemovedReplica(c.desc, c.node); ok {
			t.Errorf("%s: reported removed (replica %d)", c.name, id)
		}
	}
}
