package placement

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// memStore is an in-memory Store: a map with one revision counter for the
// whole store, as etcd's mod revisions.
type memStore struct {
	mu   sync.Mutex
	rev  int64
	data map[string]memValue
	// failCAS makes the next failCAS CompareAndSets fail, as if another
	// writer had won the race.
	failCAS int
	cas     int // CompareAndSet calls
}

type memValue struct {
	value []byte
	rev   int64
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{data: map[string]memValue{}} }

func (s *memStore) Get(_ context.Context, key []byte) ([]byte, int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[string(key)]
	if !ok {
		return nil, 0, false, nil
	}
	return bytes.Clone(v.value), v.rev, true, nil
}

func (s *memStore) CompareAndSet(_ context.Context, key, value []byte, expected int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cas++
	cur := s.data[string(key)]
	if s.failCAS > 0 {
		s.failCAS--
		return false, nil
	}
	if cur.rev != expected {
		return false, nil
	}
	s.rev++
	s.data[string(key)] = memValue{value: bytes.Clone(value), rev: s.rev}
	return true, nil
}

func (s *memStore) Scan(_ context.Context, prefix []byte) (keys, values [][]byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.data {
		if bytes.HasPrefix([]byte(k), prefix) && v.value != nil {
			keys = append(keys, []byte(k))
		}
	}
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
	for _, k := range keys {
		values = append(values, bytes.Clone(s.data[string(k)].value))
	}
	return keys, values, nil
}

// record returns the node record stored for id, or nil.
func (s *memStore) record(t *testing.T, id uint64) *pb.NodeRecord {
	t.Helper()
	v, _, ok, _ := s.Get(context.Background(), NodeKey(id))
	if !ok {
		return nil
	}
	rec := &pb.NodeRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeActuator plays the cluster: it holds every range's true descriptor
// and leader, records the calls, and applies them as the nodes would (a
// move: +2 generations, a removal: +1; a removed leader hands leadership to
// the first other voter; a split: both halves at the next generation).
type fakeActuator struct {
	mu      sync.Mutex
	descs   map[uint64]*pb.RangeDescriptor
	leader  map[uint64]uint64
	size    map[uint64]int64
	calls   []string // as started
	done    int      // calls finished
	gate    chan struct{}
	fail    error
	running int
}

var _ Actuator = (*fakeActuator)(nil)

func newFakeActuator() *fakeActuator {
	return &fakeActuator{descs: map[uint64]*pb.RangeDescriptor{}, leader: map[uint64]uint64{}, size: map[uint64]int64{}}
}

// addRange adds a range with voters on nodes, led by the first one.
func (a *fakeActuator) addRange(id uint64, start, end string, nodes ...uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.descs[id] = newDesc(id, start, end, nodes, nil, 1)
	a.leader[id] = nodes[0]
}

// begin records a call and waits for the gate, if one is set.
func (a *fakeActuator) begin(ctx context.Context, call string) error {
	a.mu.Lock()
	a.calls = append(a.calls, call)
	a.running++
	gate, fail := a.gate, a.fail
	a.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fail
}

func (a *fakeActuator) end() {
	a.mu.Lock()
	a.running--
	a.done++
	a.mu.Unlock()
}

func (a *fakeActuator) MoveReplica(ctx context.Context, rangeID, from, to uint64) (*pb.RangeDescriptor, error) {
	defer a.end()
	if err := a.begin(ctx, fmt.Sprintf("move r%d %d->%d", rangeID, from, to)); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	d := proto.Clone(a.descs[rangeID]).(*pb.RangeDescriptor)
	d.Replicas = slices.DeleteFunc(d.Replicas, func(r *pb.ReplicaDescriptor) bool { return r.NodeId == from })
	d.Generation++
	if to != 0 {
		d.Replicas = append(d.Replicas, &pb.ReplicaDescriptor{NodeId: to, ReplicaId: d.NextReplicaId})
		d.NextReplicaId++
		d.Generation++
	}
	if a.leader[rangeID] == from {
		a.leader[rangeID] = d.Replicas[0].NodeId
	}
	a.descs[rangeID] = d
	return proto.Clone(d).(*pb.RangeDescriptor), nil
}

func (a *fakeActuator) TransferLeader(ctx context.Context, rangeID, to uint64) error {
	defer a.end()
	if err := a.begin(ctx, fmt.Sprintf("transfer r%d ->%d", rangeID, to)); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.leader[rangeID] = to
	return nil
}

func (a *fakeActuator) SplitRange(ctx context.Context, rangeID uint64) (*pb.RangeDescriptor, *pb.RangeDescriptor, error) {
	defer a.end()
	if err := a.begin(ctx, fmt.Sprintf("split r%d", rangeID)); err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	left := proto.Clone(a.descs[rangeID]).(*pb.RangeDescriptor)
	var nextID uint64
	for id := range a.descs {
		nextID = max(nextID, id+1)
	}
	mid := midKey(left.StartKey, left.EndKey)
	left.Generation++
	right := proto.Clone(left).(*pb.RangeDescriptor)
	right.RangeId, right.StartKey = nextID, mid
	left.EndKey = mid
	a.descs[left.RangeId], a.descs[right.RangeId] = left, right
	a.leader[right.RangeId] = a.leader[left.RangeId]
	a.size[left.RangeId] /= 2
	a.size[right.RangeId] = a.size[left.RangeId]
	return proto.Clone(left).(*pb.RangeDescriptor), proto.Clone(right).(*pb.RangeDescriptor), nil
}

// reports returns what node would report: every range it has a replica of.
func (a *fakeActuator) reports(node uint64) []*pb.RangeReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*pb.RangeReport
	for _, id := range sortedKeys(a.descs) {
		d := a.descs[id]
		if !slices.ContainsFunc(d.Replicas, func(r *pb.ReplicaDescriptor) bool { return r.NodeId == node }) {
			continue
		}
		rep := &pb.RangeReport{Descriptor_: proto.Clone(d).(*pb.RangeDescriptor), LeaderNodeId: a.leader[id], IsLeader: a.leader[id] == node}
		if rep.IsLeader {
			rep.SizeBytes = a.size[id]
		}
		out = append(out, rep)
	}
	return out
}

// started returns the calls started so far, sorted.
func (a *fakeActuator) started() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.calls)
	slices.Sort(out)
	return out
}

func (a *fakeActuator) setFail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail = err
}

// reset forgets the recorded calls.
func (a *fakeActuator) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls, a.done = nil, 0
}

// closeGate makes calls wait until released; release lets n of them go;
// openGate lets every call through again.
func (a *fakeActuator) closeGate() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gate = make(chan struct{})
}

func (a *fakeActuator) release(n int) {
	a.mu.Lock()
	gate := a.gate
	a.mu.Unlock()
	for range n {
		gate <- struct{}{}
	}
}

func (a *fakeActuator) openGate() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gate != nil {
		close(a.gate)
		a.gate = nil
	}
}
