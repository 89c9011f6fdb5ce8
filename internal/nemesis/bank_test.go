package nemesis

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// fixedBalances answers every transaction of gets with the same balances.
type fixedBalances struct {
	pb.KVClient
	balances []string // "" is a missing account
}

func (f fixedBalances) Txn(_ context.Context, req *pb.TxnRequest, _ ...grpc.CallOption) (*pb.TxnResponse, error) {
	resp := &pb.TxnResponse{Succeeded: true}
	for i, op := range req.Success {
		get := &pb.GetResponse{}
		if f.balances[i] != "" {
			get.Kv = &pb.KeyValue{Key: op.GetGet().Key, Value: []byte(f.balances[i])}
		}
		resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_Get{Get: get}})
	}
	return resp, nil
}

// TestBankReadCatchesBrokenInvariants makes sure the bank check is not
// vacuous: a read that sees money created, lost, a negative balance or a
// missing account is a violation; a conserved total is not.
func TestBankReadCatchesBrokenInvariants(t *testing.T) {
	const accounts = 4
	itoa := strconv.Itoa
	for _, tc := range []struct {
		name     string
		balances []string
		want     string // "" for no violation
	}{
		{"conserved", []string{itoa(bankInitial), itoa(bankInitial - 30), itoa(bankInitial + 30), itoa(bankInitial)}, ""},
		{"half a transfer", []string{itoa(bankInitial), itoa(bankInitial - 30), itoa(bankInitial), itoa(bankInitial)}, "total is 370, want 400"},
		{"negative", []string{itoa(-10), itoa(bankInitial + 10), itoa(bankInitial), itoa(bankInitial)}, "account 0 is negative"},
		{"missing", []string{itoa(bankInitial), "", itoa(bankInitial), itoa(bankInitial)}, "account 1 is missing"},
		{"garbage", []string{itoa(bankInitial), "x", itoa(bankInitial), itoa(bankInitial)}, `account 1 holds "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBankState(accounts)
			if _, err := b.readAll(context.Background(), fixedBalances{balances: tc.balances}, 1); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == "" && len(b.violations) > 0:
				t.Fatalf("violations %v, want none", b.violations)
			case tc.want != "" && (len(b.violations) != 1 || !strings.Contains(b.violations[0], tc.want)):
				t.Fatalf("violations %v, want one saying %q", b.violations, tc.want)
			}
		})
	}
}

// TestBankAccountsSpreadOverRanges: one account in each initial range, so
// every transfer crosses ranges.
func TestBankAccountsSpreadOverRanges(t *testing.T) {
	b := newBankState(8)
	for i, a := range b.accounts {
		if want := keyInRange(i, 8, ""); !strings.HasPrefix(string(a), want) {
			t.Fatalf("account %d is %q, want it in range %d (prefix %q)", i, a, i, want)
		}
	}
}
