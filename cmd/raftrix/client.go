package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// clientFlags are the connection flags of every client command.
type clientFlags struct {
	endpoints   []string
	timeout     time.Duration
	dialTimeout time.Duration
	certsDir    string // client.crt/.key and ca.crt; "" for plaintext
}

func (f *clientFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.endpoints, "endpoints", []string{"127.0.0.1:7001"},
		"nodes to talk to, HOST:PORT comma-separated, tried in order")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second,
		"bound on each request to the cluster, retries on other endpoints included")
	fs.DurationVar(&f.dialTimeout, "dial-timeout", 2*time.Second,
		"bound on connecting to one endpoint before trying the next")
	fs.StringVar(&f.certsDir, "certs-dir", "", "connect with mutual TLS using ca.crt and client.crt/.key of this directory")
}

// maxMessage matches the server's gRPC message bound, so that a scan page of
// large values is not refused by the client.
const maxMessage = 32 << 20

// dial checks the flags and prepares one connection per endpoint. It does
// not connect: endpoints are connected when first needed.
func (f *clientFlags) dial() (*client, error) {
	if len(f.endpoints) == 0 {
		return nil, usagef("--endpoints must list at least one HOST:PORT")
	}
	if f.timeout <= 0 || f.dialTimeout <= 0 {
		return nil, usagef("--timeout and --dial-timeout must be positive")
	}
	tlsConfig, err := f.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &client{flags: *f}
	for _, addr := range f.endpoints {
		addr = strings.TrimSpace(addr)
		if _, _, err := net.SplitHostPort(addr); err != nil {
			c.Close()
			return nil, usagef("invalid endpoint %q: %v", addr, err)
		}
		ep := &endpoint{addr: addr}
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(ep.credentials(tlsConfig)),
			grpc.WithContextDialer(ep.dialContext),
			pb.DialCodec(),
			// A CLI run is short: reconnect to a restarted node within it.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: f.dialTimeout,
			}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)),
		)
		if err != nil {
			c.Close()
			return nil, usagef("invalid endpoint %q: %v", addr, err)
		}
		ep.conn = conn
		c.eps = append(c.eps, ep)
	}
	return c, nil
}

// client sends requests to a list of endpoints, failing over between them.
type client struct {
	flags clientFlags
	eps   []*endpoint
}

// Close closes every connection.
func (c *client) Close() {
	for _, ep := range c.eps {
		ep.conn.Close()
	}
}

// requestKind decides which failures allow sending a request again.
type requestKind int

const (
	// read requests change nothing, so any Unavailable may be retried.
	read requestKind = iota
	// write requests may have been applied by a node that then failed, and
	// a second Put would apply twice (a new revision, or a compare that now
	// fails). They are retried only when no node received them (connection
	// failure) or a node refused them before doing anything (a status with
	// a RoutingError detail).
	write
)

func (k requestKind) retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return k == read || node.RoutingErrorOf(err) != nil
	case codes.FailedPrecondition:
		// A routing refusal may come as FailedPrecondition too (see the
		// RoutingError comment in kv.proto); a compare failure never
		// carries one.
		return node.RoutingErrorOf(err) != nil
	}
	return false
}

// do sends one request, bounded by --timeout: fn on the first endpoint that
// can be connected to, then on the next ones while the failure is retryable,
// cycling through the list with backoff (an election takes a moment). It
// gives up at once when no endpoint can be connected to at all.
func (c *client) do(ctx context.Context, kind requestKind, fn func(context.Context, *grpc.ClientConn) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.flags.timeout)
	defer cancel()
	wait := 50 * time.Millisecond
	var lastErr error
	for {
		var unreachable []string
		for _, ep := range c.eps {
			conn, err := ep.ready(ctx, c.flags.dialTimeout)
			if err != nil {
				unreachable = append(unreachable, err.Error())
				if ctx.Err() != nil {
					return c.timedOut(kind, false, lastErr, err)
				}
				continue
			}
			err = fn(ctx, conn)
			if err == nil || !kind.retryable(err) {
				if status.Code(err) == codes.DeadlineExceeded && ctx.Err() != nil {
					return c.timedOut(kind, true, lastErr, err)
				}
				return err
			}
			lastErr = err
		}
		if len(unreachable) == len(c.eps) {
			return &unreachableError{msg: "cannot connect to any endpoint: " + strings.Join(unreachable, "; ")}
		}
		select {
		case <-ctx.Done():
			return c.timedOut(kind, false, lastErr, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// timedOut describes a request that ran out of time; lastErr, if any, is the
// retryable failure that kept it from succeeding. inFlight says the time ran
// out while a node was working on the request: a write may have applied.
func (c *client) timedOut(kind requestKind, inFlight bool, lastErr, err error) error {
	msg := fmt.Sprintf("timed out after %v", c.flags.timeout)
	if lastErr == nil {
		lastErr = err
	}
	if lastErr != nil {
		msg += ": " + errorMessage(lastErr)
	}
	if kind == write && inFlight {
		msg += " (the write may or may not have been applied)"
	}
	return &codedError{code: exitUnavailable, msg: msg}
}

// call sends one request to one endpoint, with no retry: used where every
// endpoint is asked on its own (status).
func (c *client) call(ctx context.Context, ep *endpoint, fn func(context.Context, *grpc.ClientConn) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.flags.timeout)
	defer cancel()
	conn, err := ep.ready(ctx, c.flags.dialTimeout)
	if err != nil {
		return err
	}
	return fn(ctx, conn)
}

// endpoint is one node address and its connection.
type endpoint struct {
	addr string
	conn *grpc.ClientConn

	// mu guards dialErr, the last failed dial: gRPC does not report why a
	// connection is down, and "connection refused" is what a user needs.
	mu      sync.Mutex
	dialErr error
}

func (ep *endpoint) dialContext(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	ep.mu.Lock()
	ep.dialErr = err
	ep.mu.Unlock()
	return conn, err
}

// ready waits until the connection is up. Connecting first, rather than
// letting the RPC fail, is what tells "never sent" (safe to send elsewhere)
// apart from "sent, then the connection broke" (a write may have applied).
func (ep *endpoint) ready(ctx context.Context, dialTimeout time.Duration) (*grpc.ClientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	ep.conn.Connect()
	for {
		s := ep.conn.GetState()
		switch s {
		case connectivity.Ready:
			return ep.conn, nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return nil, ep.unreachable()
		}
		if !ep.conn.WaitForStateChange(ctx, s) {
			return nil, ep.unreachable()
		}
	}
}

func (ep *endpoint) unreachable() error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var opErr *net.OpError
	switch {
	case errors.As(ep.dialErr, &opErr):
		// "connect: connection refused", without repeating the address.
		return &unreachableError{msg: ep.addr + ": " + opErr.Err.Error()}
	case ep.dialErr != nil:
		return &unreachableError{msg: ep.addr + ": " + ep.dialErr.Error()}
	}
	return &unreachableError{msg: ep.addr + ": not connected"}
}
