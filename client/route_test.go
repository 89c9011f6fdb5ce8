package client

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// These tests run the client against fake nodes whose answers they script,
// to reach the routing paths a real cluster rarely takes: a real node
// forwards a request to the leader itself, so routing errors reach a client
// only when forwarding fails.

// fakeNode is one scripted node serving KV and Placement.
type fakeNode struct {
	id   uint64
	addr string

	mu        sync.Mutex
	puts      int
	gets      int
	lookups   int
	listNodes int
	// Scripts; nil means success (put/get) or Unimplemented (placement).
	put    func(n int, req *pb.PutRequest) error
	get    func(n int, req *pb.GetRequest) error
	lookup func(n int, req *pb.LookupRequest) (*pb.LookupResponse, error)
	nodes  func() *pb.ListNodesResponse
	// rangeOf names the range a key is served from in answers (default 1).
	rangeOf func(key []byte) uint64
}

type fakeKV struct {
	pb.UnimplementedKVServer
	n *fakeNode
}

type fakePlacement struct {
	pb.UnimplementedPlacementServer
	n *fakeNode
}

func startFake(t testing.TB, id uint64) *fakeNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{id: id, addr: lis.Addr().String()}
	srv := grpc.NewServer()
	pb.RegisterKVServer(srv, &fakeKV{n: n})
	pb.RegisterPlacementServer(srv, &fakePlacement{n: n})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return n
}

func (f *fakeNode) header(key []byte) *pb.ResponseHeader {
	h := &pb.ResponseHeader{RangeId: 1, NodeId: f.id}
	if f.rangeOf != nil {
		h.RangeId = f.rangeOf(key)
	}
	return h
}

func (f *fakeNode) counts() (puts, gets, lookups, listNodes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.puts, f.gets, f.lookups, f.listNodes
}

func (s *fakeKV) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	f := s.n
	f.mu.Lock()
	f.puts++
	n, script := f.puts, f.put
	f.mu.Unlock()
	if script != nil {
		if err := script(n, req); err != nil {
			return nil, err
		}
	}
	return &pb.PutResponse{Header: f.header(req.Key), Kv: &pb.KeyValue{Key: req.Key, ModRevision: 1}}, nil
}

func (s *fakeKV) Get(ctx context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	f := s.n
	f.mu.Lock()
	f.gets++
	n, script := f.gets, f.get
	f.mu.Unlock()
	if script != nil {
		if err := script(n, req); err != nil {
			return nil, err
		}
	}
	return &pb.GetResponse{Header: f.header(req.Key)}, nil
}

func (s *fakePlacement) Lookup(ctx context.Context, req *pb.LookupRequest) (*pb.LookupResponse, error) {
	f := s.n
	f.mu.Lock()
	f.lookups++
	n, script := f.lookups, f.lookup
	f.mu.Unlock()
	if script == nil {
		return nil, status.Error(codes.Unimplemented, "no lookups here")
	}
	return script(n, req)
}

func (s *fakePlacement) ListNodes(ctx context.Context, req *pb.ListNodesRequest) (*pb.ListNodesResponse, error) {
	f := s.n
	f.mu.Lock()
	f.listNodes++
	script := f.nodes
	f.mu.Unlock()
	if script == nil {
		return nil, status.Error(codes.Unimplemented, "no node list here")
	}
	return script(), nil
}

func desc(id uint64, start, end string, gen uint64) *pb.RangeDescriptor {
	d := &pb.RangeDescriptor{RangeId: id, Generation: gen}
	if start != "" {
		d.StartKey = []byte(start)
	}
	if end != "" {
		d.EndKey = []byte(end)
	}
	return d
}

// lookupAnswer scripts Lookup to always give d led by leader.
func lookupAnswer(d *pb.RangeDescriptor, leader *fakeNode) func(int, *pb.LookupRequest) (*pb.LookupResponse, error) {
	return func(int, *pb.LookupRequest) (*pb.LookupResponse, error) {
		return &pb.LookupResponse{Descriptor_: d, LeaderNodeId: leader.id, LeaderAddr: leader.addr}, nil
	}
}

func routingErr(re *pb.RoutingError) error {
	st, err := status.New(codes.Unavailable, "routing: "+re.Reason.String()).WithDetails(re)
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func newTestDB(t testing.TB, timeout time.Duration, seeds ...*fakeNode) *DB {
	t.Helper()
	var eps []string
	for _, s := range seeds {
		eps = append(eps, s.addr)
	}
	db, err := New(Config{Endpoints: eps, RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func cachedLeader(t *testing.T, db *DB, key string) rangeEntry {
	t.Helper()
	e, ok := db.cache.get([]byte(key))
	if !ok {
		t.Fatalf("no cache entry for %q", key)
	}
	return e
}

// A NOT_LEADER hint with the leader's address: the request goes there at
// once, with no second lookup, and so do later requests.
func TestRouteNotLeaderHint(t *testing.T) {
	a, b := startFake(t, 1), startFake(t, 2)
	a.lookup = lookupAnswer(desc(1, "", "", 1), a)
	a.put = func(int, *pb.PutRequest) error {
		return routingErr(&pb.RoutingError{Reason: pb.RoutingError_NOT_LEADER, RangeId: 1, LeaderNodeId: 2, LeaderAddr: b.addr})
	}
	db := newTestDB(t, 5*time.Second, a)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := db.Put(ctx, []byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	aPuts, _, lookups, _ := a.counts()
	bPuts, _, _, _ := b.counts()
	if aPuts != 1 || bPuts != 3 || lookups != 1 {
		t.Fatalf("puts on a=%d b=%d, lookups=%d; want 1, 3, 1", aPuts, bPuts, lookups)
	}
	if e := cachedLeader(t, db, "k"); e.leaderID != 2 || e.leaderAddr != b.addr {
		t.Fatalf("cached leader %d at %s, want 2 at %s", e.leaderID, e.leaderAddr, b.addr)
	}
	if got := db.stats.direct.Load(); got != 3 {
		t.Fatalf("direct answers = %d, want 3", got)
	}
}

// A hint naming only the leader's node ID is resolved through ListNodes.
func TestRouteNotLeaderHintByNodeID(t *testing.T) {
	a, c := startFake(t, 1), startFake(t, 3)
	a.lookup = lookupAnswer(desc(1, "", "", 1), a)
	a.nodes = func() *pb.ListNodesResponse {
		return &pb.ListNodesResponse{Nodes: []*pb.NodeInfo{
			{Node: &pb.NodeRecord{NodeId: 1, Addr: a.addr}, Live: true},
			{Node: &pb.NodeRecord{NodeId: 3, Addr: c.addr}, Live: true},
		}}
	}
	a.put = func(int, *pb.PutRequest) error {
		return routingErr(&pb.RoutingError{Reason: pb.RoutingError_NOT_LEADER, RangeId: 1, LeaderNodeId: 3})
	}
	db := newTestDB(t, 5*time.Second, a)
	if _, err := db.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	aPuts, _, lookups, listNodes := a.counts()
	cPuts, _, _, _ := c.counts()
	if aPuts != 1 || cPuts != 1 || lookups != 1 || listNodes != 1 {
		t.Fatalf("puts a=%d c=%d, lookups=%d, listNodes=%d; want 1 each", aPuts, cPuts, lookups, listNodes)
	}
	if e := cachedLeader(t, db, "k"); e.leaderID != 3 {
		t.Fatalf("cached leader %d, want 3", e.leaderID)
	}
}

// A hint is followed at once even when the key is not cached (placement
// cannot be asked here).
func TestRouteHintWithoutCache(t *testing.T) {
	a, b := startFake(t, 1), startFake(t, 2)
	a.put = func(int, *pb.PutRequest) error {
		return routingErr(&pb.RoutingError{Reason: pb.RoutingError_NOT_LEADER, RangeId: 1, LeaderNodeId: 2, LeaderAddr: b.addr})
	}
	db := newTestDB(t, 5*time.Second, a)
	start := time.Now()
	if _, err := db.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	aPuts, _, lookups, _ := a.counts()
	bPuts, _, _, _ := b.counts()
	if aPuts != 1 || bPuts != 1 || lookups != 1 {
		t.Fatalf("puts a=%d b=%d, lookups=%d; want 1 each", aPuts, bPuts, lookups)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("following the hint took %v: it should not back off", d)
	}
}

// WRONG_RANGE drops the entry and looks the key up again.
func TestRouteWrongRange(t *testing.T) {
	a, b, c := startFake(t, 1), startFake(t, 2), startFake(t, 3)
	a.lookup = func(n int, _ *pb.LookupRequest) (*pb.LookupResponse, error) {
		if n == 1 { // stale: b no longer holds the range
			return &pb.LookupResponse{Descriptor_: desc(1, "", "", 1), LeaderNodeId: 2, LeaderAddr: b.addr}, nil
		}
		return &pb.LookupResponse{Descriptor_: desc(9, "", "", 2), LeaderNodeId: 3, LeaderAddr: c.addr}, nil
	}
	b.put = func(int, *pb.PutRequest) error {
		return routingErr(&pb.RoutingError{Reason: pb.RoutingError_WRONG_RANGE})
	}
	c.rangeOf = func([]byte) uint64 { return 9 }
	db := newTestDB(t, 5*time.Second, a)
	if _, err := db.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	bPuts, _, _, _ := b.counts()
	cPuts, _, _, _ := c.counts()
	_, _, lookups, _ := a.counts()
	if bPuts != 1 || cPuts != 1 || lookups != 2 {
		t.Fatalf("puts b=%d c=%d, lookups=%d; want 1, 1, 2", bPuts, cPuts, lookups)
	}
	if e := cachedLeader(t, db, "k"); e.desc.RangeId != 9 || e.leaderID != 3 {
		t.Fatalf("cached range %d led by %d, want 9 led by 3", e.desc.RangeId, e.leaderID)
	}
}

// A hint carrying a newer descriptor replaces the cached one; a key that is
// not in it any more is looked up again.
func TestRouteNewerDescriptorHint(t *testing.T) {
	a, b := startFake(t, 1), startFake(t, 2)
	a.lookup = func(_ int, req *pb.LookupRequest) (*pb.LookupResponse, error) {
		if string(req.Key) < "m" {
			return &pb.LookupResponse{Descriptor_: desc(1, "", "", 1), LeaderNodeId: 1, LeaderAddr: a.addr}, nil
		}
		return &pb.LookupResponse{Descriptor_: desc(2, "m", "", 2), LeaderNodeId: 2, LeaderAddr: b.addr}, nil
	}
	a.put = func(int, *pb.PutRequest) error {
		return routingErr(&pb.RoutingError{Reason: pb.RoutingError_NOT_LEADER, RangeId: 1, LeaderNodeId: 2, LeaderAddr: b.addr,
			Descriptor_: desc(1, "", "m", 2)})
	}
	b.rangeOf = func(key []byte) uint64 {
		if string(key) < "m" {
			return 1
		}
		return 2
	}
	db := newTestDB(t, 5*time.Second, a)
	ctx := context.Background()
	if _, err := db.Put(ctx, []byte("a"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if e := cachedLeader(t, db, "a"); e.desc.Generation != 2 || string(e.desc.EndKey) != "m" || e.leaderID != 2 {
		t.Fatalf("cached %v led by %d, want [,m) generation 2 led by 2", e.desc, e.leaderID)
	}
	if _, ok := db.cache.get([]byte("z")); ok {
		t.Fatal("z still cached after the split hint")
	}
	if _, err := db.Put(ctx, []byte("z"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	aPuts, _, lookups, _ := a.counts()
	bPuts, _, _, _ := b.counts()
	if aPuts != 1 || bPuts != 2 || lookups != 2 {
		t.Fatalf("puts a=%d b=%d, lookups=%d; want 1, 2, 2", aPuts, bPuts, lookups)
	}
	if got := len(db.cache.entries()); got != 2 {
		t.Fatalf("%d cache entries, want 2", got)
	}
}

// NO_LEADER is retried after a backoff, a write included (it was refused).
func TestRouteNoLeaderBacksOff(t *testing.T) {
	a := startFake(t, 1)
	a.lookup = lookupAnswer(desc(1, "", "", 1), a)
	a.put = func(n int, _ *pb.PutRequest) error {
		if n <= 2 {
			return routingErr(&pb.RoutingError{Reason: pb.RoutingError_NO_LEADER, RangeId: 1})
		}
		return nil
	}
	db := newTestDB(t, 5*time.Second, a)
	start := time.Now()
	if _, err := db.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	// Backoffs of 10ms and 20ms, jittered to at least half.
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Fatalf("two NO_LEADER retries took %v, want backoff of at least 15ms", d)
	}
	if puts, _, _, _ := a.counts(); puts != 3 {
		t.Fatalf("puts = %d, want 3", puts)
	}
}

// An unreachable cached leader: nothing was sent, so even a write goes to a
// seed, and every entry led from that address forgets its leader.
func TestRouteDeadLeaderFallsBackToSeed(t *testing.T) {
	a := startFake(t, 1)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	a.lookup = func(int, *pb.LookupRequest) (*pb.LookupResponse, error) {
		return &pb.LookupResponse{Descriptor_: desc(1, "", "", 1), LeaderNodeId: 2, LeaderAddr: dead}, nil
	}
	db := newTestDB(t, 5*time.Second, a)
	if _, err := db.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if puts, _, _, _ := a.counts(); puts != 1 {
		t.Fatalf("puts on the seed = %d, want 1", puts)
	}
	// The seed's answer names node 1 as the server; its address is not
	// known, so the entry stays without a leader (requests go to seeds).
	if e := cachedLeader(t, db, "k"); e.leaderAddr == dead {
		t.Fatalf("entry still led from the dead address")
	}
}

// A write that failed after it was sent, without a routing error, may have
// been applied: it is not sent again. A read is.
func TestRouteAmbiguousWriteNotRetried(t *testing.T) {
	a := startFake(t, 1)
	a.lookup = lookupAnswer(desc(1, "", "", 1), a)
	a.put = func(int, *pb.PutRequest) error {
		return status.Error(codes.Unavailable, "leader changed; outcome unknown")
	}
	a.get = func(n int, _ *pb.GetRequest) error {
		if n == 1 {
			return status.Error(codes.Unavailable, "leader changed")
		}
		return nil
	}
	db := newTestDB(t, 5*time.Second, a)
	ctx := context.Background()
	if _, err := db.Put(ctx, []byte("k"), []byte("v")); status.Code(err) != codes.Unavailable {
		t.Fatalf("put: %v, want Unavailable", err)
	}
	if _, err := db.Get(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if puts, gets, _, _ := a.counts(); puts != 1 || gets != 2 {
		t.Fatalf("puts=%d gets=%d, want 1 and 2", puts, gets)
	}
}

// Retries stop at RequestTimeout with the last error.
func TestRouteDeadline(t *testing.T) {
	a := startFake(t, 1)
	a.lookup = lookupAnswer(desc(1, "", "", 1), a)
	a.put = func(int, *pb.PutRequest) error {
		return routingErr(&pb.RoutingError{Reason: pb.RoutingError_NO_LEADER, RangeId: 1})
	}
	db := newTestDB(t, 300*time.Millisecond, a)
	start := time.Now()
	_, err := db.Put(context.Background(), []byte("k"), []byte("v"))
	// The last routing error, or DeadlineExceeded if the deadline came
	// while a try was in flight.
	if routingErrorOf(err) == nil && status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("put: %v, want the last routing error", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("gave up after %v, want about 300ms", d)
	}
}

// Lookup failures do not fail requests: they go to a seed.
func TestRouteWithoutPlacement(t *testing.T) {
	a, b := startFake(t, 1), startFake(t, 2) // no lookups scripted: Unimplemented
	db := newTestDB(t, 5*time.Second, a, b)
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if _, err := db.Get(ctx, []byte("k")); err != nil {
			t.Fatal(err)
		}
	}
	_, aGets, aLookups, _ := a.counts()
	_, bGets, bLookups, _ := b.counts()
	if aGets+bGets != 4 || aLookups+bLookups != 1 {
		t.Fatalf("gets %d+%d, lookups %d+%d; want 4 gets and 1 lookup (then lookups pause)", aGets, bGets, aLookups, bLookups)
	}
}

func TestRangeCache(t *testing.T) {
	c := newRangeCache()
	mustGet := func(key string, wantID uint64) rangeEntry {
		t.Helper()
		e, ok := c.get([]byte(key))
		if wantID == 0 {
			if ok {
				t.Fatalf("%q: found range %d, want none", key, e.desc.RangeId)
			}
			return e
		}
		if !ok || e.desc.RangeId != wantID {
			t.Fatalf("%q: found %v (%v), want range %d", key, e.desc, ok, wantID)
		}
		return e
	}
	c.insert(rangeEntry{desc: desc(1, "", "m", 1), leaderID: 1, leaderAddr: "n1"}, false)
	c.insert(rangeEntry{desc: desc(2, "m", "", 1), leaderID: 2, leaderAddr: "n2"}, false)
	mustGet("", 1)
	mustGet("l", 1)
	mustGet("m", 2)
	mustGet("zzz", 2)

	// A split of range 2 at "t": the right half evicts the parent.
	if !c.insert(rangeEntry{desc: desc(3, "t", "", 2), leaderID: 2, leaderAddr: "n2"}, false) {
		t.Fatal("newer right half refused")
	}
	mustGet("m", 0)
	mustGet("u", 3)
	// The stale parent cannot come back.
	if c.insert(rangeEntry{desc: desc(2, "m", "", 1)}, false) {
		t.Fatal("stale parent accepted")
	}
	c.insert(rangeEntry{desc: desc(2, "m", "t", 2), leaderID: 1, leaderAddr: "n1"}, false)
	mustGet("m", 2)

	// Same generation: a fresher leader replaces the entry, unless only
	// newer descriptors are wanted.
	if c.insert(rangeEntry{desc: desc(2, "m", "t", 2)}, true) {
		t.Fatal("same generation accepted with onlyNewer")
	}
	c.setLeader([]byte("n"), 2, 3, "n3")
	if e := mustGet("n", 2); e.leaderID != 3 || e.leaderAddr != "n3" {
		t.Fatalf("leader %d %s, want 3 n3", e.leaderID, e.leaderAddr)
	}
	c.setLeader([]byte("n"), 7, 1, "n1") // another range: ignored
	if e := mustGet("n", 2); e.leaderID != 3 {
		t.Fatalf("setLeader for another range changed the entry")
	}

	c.forgetAddr("n2")
	if e := mustGet("u", 3); e.leaderAddr != "" || e.leaderID != 0 {
		t.Fatalf("leader at n2 not forgotten: %d %s", e.leaderID, e.leaderAddr)
	}
	if e := mustGet("a", 1); e.leaderAddr != "n1" {
		t.Fatal("forgetAddr touched another address")
	}

	c.evict([]byte("a"), 9) // not that range: kept
	mustGet("a", 1)
	c.evict([]byte("a"), 1)
	mustGet("a", 0)
	if got := len(c.entries()); got != 2 {
		t.Fatalf("%d entries, want 2", got)
	}
}
