package bench

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTxnWorkloadIsOneTransactionPerOperation(t *testing.T) {
	spec, err := TxnSpec(TxnOptions{KeysPerTxn: 4, RangesPerTxn: 2, Ranges: 8, Keys: 4000, KeySize: 16, ValueSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	d := newMemDriver()
	d.delay = 100 * time.Microsecond // let transactions overlap
	cfg := RunConfig{Clients: 8, Total: 2000, Seed: 1}
	ctx := context.Background()
	if err := Load(ctx, cfg, spec, d); err != nil {
		t.Fatal(err)
	}
	// 500 keys per range, written 16 at a time: 32 transactions per range.
	if len(d.kvs) != 4000 || d.txns != 8*32 {
		t.Fatalf("load: %d keys written by %d transactions, want 4000 by %d", len(d.kvs), d.txns, 8*32)
	}
	// The load told the workers every key's revision: the run reads none.
	for i := uint64(0); i < spec.Keys; i++ {
		if rev, ok := spec.revs.get(i); !ok || rev != d.kvs[string(appendTaggedKey(nil, rangeLayout{8}.prefix(i), txnKeyTag, i, 16))] {
			t.Fatalf("key %d: known revision %d, %v", i, rev, ok)
		}
	}
	d.starts = nil
	loadTxns := d.txns
	rep, err := Run(ctx, cfg, spec, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Ops) != 1 || rep.Ops[0].Op != "txn" || rep.Total.Errors != 0 || rep.Total.Count != 2000 {
		t.Fatalf("report: %+v", rep.Ops)
	}
	// Measured operations plus the few that ran past --total: every one a
	// single transaction and nothing else.
	if ran := d.txns - loadTxns; ran != len(d.startTimes()) || ran < 2000 {
		t.Errorf("%d transactions for %d store calls", ran, len(d.startTimes()))
	}
	if c := rep.Total.Conflicts; c > 200 {
		t.Errorf("%d conflicts of 2000 with fresh revisions", c)
	}
}

// A key changed behind the workers' back makes one transaction conflict;
// its failure branch refreshes the revision, so the retry succeeds.
func TestTxnConflictRefreshesRevisions(t *testing.T) {
	spec, err := TxnSpec(TxnOptions{KeysPerTxn: 2, RangesPerTxn: 1, Ranges: 1, Keys: 2, KeySize: 16, ValueSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	d := newMemDriver()
	ctx := context.Background()
	wl, err := newWorkload(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	wk := wl.newWorker(0)
	// Nothing loaded and nothing known: the first transaction reads both
	// keys (absent), then creates them.
	if oc, err := wk.txn(ctx, d); err != nil || oc != outcomeOK {
		t.Fatalf("first txn: %v, %v", oc, err)
	}
	if err := d.Put(ctx, wk.keyAt(1), []byte("other")); err != nil {
		t.Fatal(err)
	}
	if oc, err := wk.txn(ctx, d); err != nil || oc != outcomeConflict {
		t.Fatalf("txn after another writer: %v, %v", oc, err)
	}
	if oc, err := wk.txn(ctx, d); err != nil || oc != outcomeOK {
		t.Fatalf("txn after the refresh: %v, %v", oc, err)
	}
}

func TestBankConservesMoney(t *testing.T) {
	for _, dist := range []string{distUniform, distZipfian} {
		spec, err := BankSpec(BankOptions{Accounts: 50, Dist: dist, KeySize: 16})
		if err != nil {
			t.Fatal(err)
		}
		d := newMemDriver()
		d.delay = 100 * time.Microsecond
		cfg := RunConfig{Clients: 8, Total: 3000, Seed: 1}
		ctx := context.Background()
		if err := Load(ctx, cfg, spec, d); err != nil {
			t.Fatal(err)
		}
		rep, err := Run(ctx, cfg, spec, d)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Total.Errors != 0 || rep.Total.Count != 3000 || rep.Ops[0].Op != "transfer" {
			t.Fatalf("%s: report %+v", dist, rep.Ops)
		}
		if rep.Total.Conflicts == 0 {
			t.Errorf("%s: 8 clients on 50 accounts never conflicted", dist)
		}
		c, err := CheckBank(ctx, spec, d, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Conserved || c.Total != 50*bankInitialBalance || len(c.Totals) != 1 {
			t.Fatalf("%s: check %+v", dist, c)
		}
		// Money moved: some balance differs from the start.
		moved := false
		for _, v := range d.vals {
			if b, _ := strconv.Atoi(string(v)); b != bankInitialBalance {
				moved = true
			}
		}
		if !moved {
			t.Errorf("%s: no balance changed", dist)
		}
	}
}

// A store whose transactions are not atomic loses money; the check must
// say so.
func TestBankCheckCatchesTornTransfers(t *testing.T) {
	spec, err := BankSpec(BankOptions{Accounts: 10, KeySize: 16})
	if err != nil {
		t.Fatal(err)
	}
	d := newMemDriver()
	d.tornTxns = true
	cfg := RunConfig{Clients: 2, Total: 200, Seed: 1}
	ctx := context.Background()
	if err := Load(ctx, cfg, spec, d); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, cfg, spec, d); err != nil {
		t.Fatal(err)
	}
	c, err := checkBank(ctx, spec, d, time.Second, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if c.Conserved || c.Total >= c.Want || len(c.Totals) != bankCheckPasses {
		t.Fatalf("torn transfers passed the check: %+v", c)
	}
	rep := &Report{Workload: "bank", Bank: c}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil || !strings.Contains(b.String(), "NOT CONSERVED") {
		t.Errorf("table does not flag the loss:\n%s", b.String())
	}
}

func TestTxnAndBankRefuseBadShapes(t *testing.T) {
	if _, err := TxnSpec(TxnOptions{KeysPerTxn: 4, RangesPerTxn: 4, Ranges: 64, Keys: 10000, KeySize: 16, Dist: distZipfian}); err == nil {
		t.Error("txn with zipfian keys accepted")
	}
	if _, err := TxnSpec(TxnOptions{KeysPerTxn: 4, RangesPerTxn: 8, Ranges: 64, Keys: 10000, KeySize: 16}); err == nil {
		t.Error("txn with more ranges than keys accepted")
	}
	if _, err := BankSpec(BankOptions{Accounts: 1, KeySize: 16}); err == nil {
		t.Error("a bank of one account accepted")
	}
	s, _ := BankSpec(BankOptions{Accounts: 10, KeySize: 16})
	s.Update = 0.5
	if err := s.Validate(); err == nil {
		t.Error("transfers mixed with blind updates accepted")
	}
	// A driver without transactions cannot run them.
	s, _ = BankSpec(BankOptions{Accounts: 10, KeySize: 16})
	var plain Driver = struct{ Driver }{newMemDriver()}
	if _, err := Run(context.Background(), RunConfig{Clients: 1, Total: 1}, s, plain); err == nil {
		t.Error("a bank run on a driver without transactions started")
	}
}
