package raftrixpb

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func prepareCommand(value []byte) *RaftCommand {
	put := &RequestOp{Request: &RequestOp_Put{Put: &PutRequest{Key: []byte("k1"), Value: value, PrevKv: true}}}
	get := &RequestOp{Request: &RequestOp_Get{Get: &GetRequest{Key: []byte("k1")}}}
	return &RaftCommand{
		ProposalId: 1<<63 + 7,
		Revision:   -1,
		Op: &RaftCommand_Prepare{Prepare: &TxnPrepare{
			TxnId:       []byte("txn-1"),
			PrimaryKey:  []byte("k0"),
			Priority:    -42,
			Compare:     []*Compare{{Key: []byte("k1"), Target: Compare_MOD_REVISION, Result: Compare_EQUAL, ModRevision: 9}},
			Success:     []*IndexedOp{{Index: 2, Op: put}},
			Failure:     []*IndexedOp{{Index: 0, Op: get}},
			WriteRecord: true,
			Heartbeat:   123456789,
		}},
	}
}

// The codec must put on the wire exactly what gRPC's default codec would,
// so that a client or server on the default codec understands it, and read
// back an equal message.
func TestCodecMatchesProtoEncoding(t *testing.T) {
	for _, size := range []int{256, 64 << 10} { // below and above gRPC's buffer pooling threshold
		msg := prepareCommand(bytes.Repeat([]byte("v"), size))
		want, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		data, err := Codec().Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		got := data.Materialize()
		data.Free()
		if !bytes.Equal(got, want) {
			t.Fatalf("%d-byte value: codec encoding differs from proto.Marshal (%d against %d bytes)", size, len(got), len(want))
		}
		back := &RaftCommand{}
		if err := Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(want)}, back); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(back, msg) {
			t.Fatalf("%d-byte value: decoded %v, want %v", size, back, msg)
		}
	}
}

// Messages without the generated methods (gRPC's own services use some)
// still go through proto.
func TestCodecFallsBackForOtherMessages(t *testing.T) {
	msg := wrapperspb.String("hello")
	data, err := Codec().Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	back := &wrapperspb.StringValue{}
	if err := Codec().Unmarshal(data, back); err != nil {
		t.Fatal(err)
	}
	if back.Value != "hello" {
		t.Fatalf("decoded %q, want %q", back.Value, "hello")
	}
	if _, err := Codec().Marshal("not a message"); err == nil || !strings.Contains(err.Error(), "not a proto.Message") {
		t.Fatalf("marshal of a string: err %v, want a clear error", err)
	}
}

// As proto.Unmarshal, decoding into a message that already holds one
// replaces it rather than merging the two.
func TestCodecReplacesWhatTheMessageHeld(t *testing.T) {
	data, err := proto.Marshal(&RaftMessageBatch{Messages: []*RaftMessage{{RangeId: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	m := &RaftMessageBatch{Messages: []*RaftMessage{{RangeId: 1}}}
	if err := Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, m); err != nil {
		t.Fatal(err)
	}
	if len(m.Messages) != 1 || m.Messages[0].RangeId != 2 {
		t.Fatalf("decoded %v, want only the message of range 2", m)
	}
}

func TestCodecRejectsGarbage(t *testing.T) {
	// Field 3 (put) with a length running past the end of the input.
	garbage := []byte{0x1a, 0x7f, 0x01}
	if err := Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(garbage)}, &RaftCommand{}); err == nil {
		t.Fatal("decoding a truncated message succeeded")
	}
}

// BenchmarkDecodeCommand compares decoding a prepare command (as every
// replica does at apply) with the generated method and with proto.
func BenchmarkDecodeCommand(b *testing.B) {
	data, err := proto.Marshal(prepareCommand(bytes.Repeat([]byte("v"), 256)))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("vt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := (&RaftCommand{}).UnmarshalVT(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := proto.Unmarshal(data, &RaftCommand{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
