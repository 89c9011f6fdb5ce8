package raftrixpb

import (
	"fmt"
	"testing"
)

func TestTxnKeys(t *testing.T) {
	put := func(k string) *RequestOp {
		return &RequestOp{Request: &RequestOp_Put{Put: &PutRequest{Key: []byte(k)}}}
	}
	get := func(k string) *RequestOp {
		return &RequestOp{Request: &RequestOp_Get{Get: &GetRequest{Key: []byte(k)}}}
	}
	del := func(k string) *RequestOp {
		return &RequestOp{Request: &RequestOp_Delete{Delete: &DeleteRequest{Key: []byte(k)}}}
	}
	keys := TxnKeys(
		[]*Compare{{Key: []byte("m")}, {Key: []byte("c")}},
		[]*RequestOp{put("z"), get("c"), del("a")},
		[]*RequestOp{get("m"), put("b")},
	)
	if got, want := fmt.Sprintf("%q", keys), `["a" "b" "c" "m" "z"]`; got != want {
		t.Fatalf("TxnKeys = %s, want %s (distinct, sorted)", got, want)
	}
	if len(TxnKeys(nil)) != 0 {
		t.Fatal("a transaction without keys has keys")
	}
	if OpKey(&RequestOp{}) != nil {
		t.Fatal("an empty operation has a key")
	}
}
