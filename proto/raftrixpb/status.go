package raftrixpb

// Hand-written helpers beside the generated code: a batch carries each
// item's failure as a Status (the fields of google.rpc.Status), converted
// here both ways for the client and the node.

import (
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
)

// StatusOf returns err's gRPC status (code, message and details such as a
// RoutingError) as a batch result carries it.
func StatusOf(err error) *Status {
	st := status.Convert(err).Proto()
	return &Status{Code: st.Code, Message: st.Message, Details: st.Details}
}

// Err returns the error that the item's own call would have returned.
func (s *Status) Err() error {
	return status.ErrorProto(&spb.Status{Code: s.Code, Message: s.Message, Details: s.Details})
}
