package killtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// initialRanges is --ranges of the cluster.
const initialRanges = 16

// cluster is three "raftrix start" processes on loopback ports, each with
// its own data dir and a log file that every start of the node appends to.
type cluster struct {
	t     *testing.T
	bin   string
	dir   string
	peers string
	nodes []*node

	mu struct {
		sync.Mutex
		// unexpected lists node exits that the test did not cause.
		unexpected []string
	}
}

// node is one node's process, restarted in place after each kill.
type node struct {
	id      int
	addr    string
	dataDir string
	logPath string
	conn    *grpc.ClientConn // to addr, for Admin and stale scans

	mu struct {
		sync.Mutex
		cmd    *exec.Cmd
		done   chan struct{} // closed when cmd has exited
		killed bool          // the test killed cmd
		starts int
	}
}

// buildBinary builds cmd/raftrix into dir.
func buildBinary(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "raftrix")
	start := time.Now()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/raftrix/raftrixdb/cmd/raftrix").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// startCluster starts three nodes in dir. Every process is killed when the
// test ends.
func startCluster(t *testing.T, bin, dir string) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: bin, dir: dir}
	var peers []string
	for i := 1; i <= 3; i++ {
		n := &node{
			id:      i,
			addr:    freeAddr(t),
			dataDir: filepath.Join(dir, fmt.Sprintf("n%d", i)),
			logPath: filepath.Join(dir, fmt.Sprintf("n%d.log", i)),
		}
		// A short reconnect backoff, so that waitServing sees a restarted
		// node within ~100ms rather than after gRPC's default 1s backoff.
		conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond},
				MinConnectTimeout: time.Second,
			}))
		if err != nil {
			t.Fatal(err)
		}
		n.conn = conn
		c.nodes = append(c.nodes, n)
		peers = append(peers, fmt.Sprintf("%d=%s", i, n.addr))
	}
	c.peers = strings.Join(peers, ",")
	t.Cleanup(c.stop)
	for _, n := range c.nodes {
		if err := c.start(n); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// endpoints returns every node's address.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, n := range c.nodes {
		eps = append(eps, n.addr)
	}
	return eps
}

// start starts n's process, appending its stdout and stderr to n's log.
func (c *cluster) start(n *node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.cmd != nil {
		select {
		case <-n.mu.done:
		default:
			return fmt.Errorf("node %d is already running", n.id)
		}
	}
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	n.mu.starts++
	fmt.Fprintf(logFile, "=== killtest: start #%d of node %d at %s\n", n.mu.starts, n.id, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.bin, "start", "--id", fmt.Sprint(n.id), "--data-dir", n.dataDir,
		"--peers", c.peers, "--ranges", fmt.Sprint(initialRanges), "--insecure",
		"--http-addr", "off", "--tick", "50ms")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start node %d: %w", n.id, err)
	}
	done := make(chan struct{})
	n.mu.cmd, n.mu.done, n.mu.killed = cmd, done, false
	starts := n.mu.starts
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logFile, "=== killtest: node %d (pid %d) exited at %s: %v\n", n.id, cmd.Process.Pid, time.Now().Format(time.RFC3339Nano), err)
		logFile.Close()
		n.mu.Lock()
		killed := n.mu.killed
		n.mu.Unlock()
		if !killed {
			c.mu.Lock()
			c.mu.unexpected = append(c.mu.unexpected, fmt.Sprintf("node %d (start #%d, pid %d) exited on its own: %v", n.id, starts, cmd.Process.Pid, err))
			c.mu.Unlock()
		}
		close(done)
	}()
	return nil
}

// kill sends SIGKILL to n's process and waits until it has exited. It
// returns the process ID.
func (c *cluster) kill(n *node) (int, error) {
	n.mu.Lock()
	cmd, done := n.mu.cmd, n.mu.done
	if cmd == nil {
		n.mu.Unlock()
		return 0, fmt.Errorf("node %d was never started", n.id)
	}
	n.mu.killed = true
	err := cmd.Process.Signal(syscall.SIGKILL)
	n.mu.Unlock()
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, fmt.Errorf("kill node %d: %w", n.id, err)
	}
	select {
	case <-done:
		return cmd.Process.Pid, nil
	case <-time.After(10 * time.Second):
		return 0, fmt.Errorf("node %d (pid %d) did not exit within 10s of SIGKILL", n.id, cmd.Process.Pid)
	}
}

// running reports whether n's process has not exited.
func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.cmd == nil {
		return false
	}
	select {
	case <-n.mu.done:
		return false
	default:
		return true
	}
}

// unexpectedExits returns the node exits the test did not cause.
func (c *cluster) unexpectedExits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.mu.unexpected...)
}

// stop kills every process and closes the connections.
func (c *cluster) stop() {
	for _, n := range c.nodes {
		if n.running() {
			if _, err := c.kill(n); err != nil {
				c.t.Errorf("cleanup: %v", err)
			}
		}
		n.conn.Close()
	}
}

// waitServing waits until n answers NodeStatus.
func (c *cluster) waitServing(ctx context.Context, n *node, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	admin := pb.NewAdminClient(n.conn)
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, err := admin.NodeStatus(cctx, &pb.NodeStatusRequest{}, grpc.WaitForReady(true))
		ccancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("node %d did not answer NodeStatus within %v: %v", n.id, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listRanges returns n's view of its replicas.
func (n *node) listRanges(ctx context.Context) ([]*pb.RangeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := pb.NewAdminClient(n.conn).ListRanges(ctx, &pb.ListRangesRequest{})
	if err != nil {
		return nil, err
	}
	return resp.Ranges, nil
}

// leadersAgreed checks, once, that every node runs, answers ListRanges, and
// knows a leader for each of its ranges, the same leader as every other node
// holding the range, and that the leader's replica is in state leader. It
// returns the ranges of the first node, or why the cluster is not healthy.
func (c *cluster) leadersAgreed(ctx context.Context) ([]*pb.RangeInfo, error) {
	type view struct {
		leader uint64
		from   int
	}
	leaders := map[uint64]view{}
	states := map[[2]uint64]string{} // (range, node) → raft state
	var first []*pb.RangeInfo
	for _, n := range c.nodes {
		if !n.running() {
			return nil, fmt.Errorf("node %d is not running", n.id)
		}
		infos, err := n.listRanges(ctx)
		if err != nil {
			return nil, fmt.Errorf("node %d: ListRanges: %v", n.id, err)
		}
		if first == nil {
			first = infos
		}
		for _, ri := range infos {
			id := ri.Descriptor_.GetRangeId()
			if ri.LeaderNodeId == 0 {
				return nil, fmt.Errorf("node %d knows no leader for range %d", n.id, id)
			}
			if v, ok := leaders[id]; ok && v.leader != ri.LeaderNodeId {
				return nil, fmt.Errorf("range %d: node %d says leader %d, node %d says %d", id, v.from, v.leader, n.id, ri.LeaderNodeId)
			}
			leaders[id] = view{ri.LeaderNodeId, n.id}
			states[[2]uint64{id, uint64(n.id)}] = ri.RaftState
		}
	}
	for id, v := range leaders {
		if s := states[[2]uint64{id, v.leader}]; s != "StateLeader" {
			return nil, fmt.Errorf("range %d: leader %d has raft state %q", id, v.leader, s)
		}
	}
	return first, nil
}

// appliedConverged checks, once, that every range has the same applied
// index on each of its replicas (as listed by the nodes).
func (c *cluster) appliedConverged(ctx context.Context) error {
	applied := map[uint64]map[int]uint64{}
	for _, n := range c.nodes {
		infos, err := n.listRanges(ctx)
		if err != nil {
			return fmt.Errorf("node %d: ListRanges: %v", n.id, err)
		}
		for _, ri := range infos {
			id := ri.Descriptor_.GetRangeId()
			if applied[id] == nil {
				applied[id] = map[int]uint64{}
			}
			applied[id][n.id] = ri.AppliedIndex
		}
	}
	for id, byNode := range applied {
		if len(byNode) != 3 {
			return fmt.Errorf("range %d has replicas on %d nodes: %v", id, len(byNode), byNode)
		}
		var want uint64
		for _, a := range byNode {
			want = a
			break
		}
		for _, a := range byNode {
			if a != want {
				return fmt.Errorf("range %d applied indexes differ: %v", id, byNode)
			}
		}
	}
	return nil
}

// staleScan reads every user key from n's own replicas (a stale scan,
// served locally), page by page.
func (n *node) staleScan(ctx context.Context) ([]*pb.KeyValue, error) {
	kv := pb.NewKVClient(n.conn)
	var out []*pb.KeyValue
	req := &pb.ScanRequest{Stale: true, Limit: 1000}
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := kv.Scan(cctx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Kvs...)
		if len(resp.Continuation) == 0 {
			return out, nil
		}
		req.Continuation = resp.Continuation
	}
}

// logTails returns the last lines of every node's log.
func (c *cluster) logTails(lines int) string {
	var b strings.Builder
	for _, n := range c.nodes {
		data, _ := os.ReadFile(n.logPath)
		ls := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
		if len(ls) > lines {
			ls = ls[len(ls)-lines:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", n.logPath, len(ls), bytes.Join(ls, []byte("\n")))
	}
	return b.String()
}
