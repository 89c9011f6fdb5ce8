package node

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// grpcServerOptions are the options of the node's gRPC server: first the
// metrics interceptors, so that they are outermost and time every call,
// those refused by authorization included; then serverOptions (tls.go);
// last the bound on received messages, Limits.MaxRequestSize, which
// replaces the constant in serverOptions (of two MaxRecvMsgSize options the
// later wins). A larger message is refused by gRPC with ResourceExhausted
// before it is decoded, so it reaches no handler or interceptor.
func (n *Node) grpcServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(n.metrics.unaryInterceptor),
		grpc.ChainStreamInterceptor(n.metrics.streamInterceptor),
		pb.ServerCodec(),
	}
	opts = append(opts, n.serverOptions()...)
	return append(opts, grpc.MaxRecvMsgSize(n.cfg.Limits.requestSize()))
}

func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.observeCall(info.FullMethod, start, err)
	return resp, err
}

func (m *metrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.observeCall(info.FullMethod, start, err)
	return err
}

func (m *metrics) observeCall(method string, start time.Time, err error) {
	m.grpcSeconds.WithLabelValues(method, status.Code(err).String()).Observe(time.Since(start).Seconds())
}

// initGRPCMethods exports the latency of every method of the server with
// code OK before the first call, so that rates and quantiles are defined
// (as zero) from the start.
func (m *metrics) initGRPCMethods(services map[string]grpc.ServiceInfo) {
	for name, svc := range services {
		for _, method := range svc.Methods {
			m.grpcSeconds.WithLabelValues("/"+name+"/"+method.Name, codes.OK.String())
		}
	}
}
