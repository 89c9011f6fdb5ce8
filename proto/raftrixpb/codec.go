package raftrixpb

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// The messages of this package also have generated MarshalVT, UnmarshalVT
// and SizeVT methods (*_vtproto.pb.go, `make proto`): straight-line code
// instead of the reflection that proto.Marshal and proto.Unmarshal walk,
// with the same wire format. Decoding Raft commands and gRPC messages was
// 8-11% of the nodes' CPU under load (BENCHMARKS.md); the hot paths call the
// VT methods, and gRPC uses them through Codec.

// vtMessage is a message with generated fast methods.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dAtA []byte) (int, error)
	UnmarshalVT(dAtA []byte) error
}

// codec is gRPC's protobuf codec with the VT methods where a message has
// them (every message of this package) and proto's otherwise (gRPC's own
// services, such as health). It keeps the name "proto": the bytes on the
// wire are the same, so either side may use gRPC's default codec.
type codec struct{}

// Codec returns the gRPC codec that uses the generated VT methods.
func Codec() encoding.CodecV2 { return codec{} }

// ServerCodec is the grpc.Server option that makes a server use Codec.
func ServerCodec() grpc.ServerOption { return grpc.ForceServerCodecV2(codec{}) }

// DialCodec is the dial option that makes a connection's calls use Codec.
func DialCodec() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.ForceCodecV2(codec{}))
}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(vtMessage)
	if !ok {
		return fallbackMarshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVT(buf); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVT((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(vtMessage)
	if !ok {
		return fallbackUnmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	// UnmarshalVT merges into m, where proto.Unmarshal replaces it: reset
	// first, so that a reused message is not a mix of two.
	if r, ok := v.(interface{ Reset() }); ok {
		r.Reset()
	}
	// UnmarshalVT copies the bytes fields it keeps, so the buffer may go
	// back to the pool.
	return m.UnmarshalVT(buf.ReadOnlyData())
}

func fallbackMarshal(v any) (mem.BufferSlice, error) {
	m := messageOf(v)
	if m == nil {
		return nil, fmt.Errorf("proto: cannot marshal %T, not a proto.Message", v)
	}
	buf, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
}

func fallbackUnmarshal(data mem.BufferSlice, v any) error {
	m := messageOf(v)
	if m == nil {
		return fmt.Errorf("proto: cannot unmarshal into %T, not a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

func messageOf(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV2:
		return v
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	}
	return nil
}
