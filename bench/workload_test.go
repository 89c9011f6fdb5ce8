package bench

import (
	"context"
	"math"
	"testing"
)

func TestYCSBMixes(t *testing.T) {
	want := map[string][numOps]float64{
		"A": {opRead: 0.5, opUpdate: 0.5},
		"B": {opRead: 0.95, opUpdate: 0.05},
		"C": {opRead: 1},
		"D": {opRead: 0.95, opInsert: 0.05},
		"E": {opScan: 0.95, opInsert: 0.05},
		"F": {opRead: 0.5, opRMW: 0.5},
	}
	for name, mix := range want {
		spec, err := YCSBSpec(YCSBOptions{Workload: name, Keys: 1000, KeySize: 16, ValueSize: 10, MaxScanLength: 100})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wl, err := newWorkload(spec, 1)
		if err != nil {
			t.Fatal(err)
		}
		wk := wl.newWorker(0)
		var counts [numOps]int
		const draws = 20000
		for i := 0; i < draws; i++ {
			counts[wk.nextOp()]++
		}
		for k := opKind(0); k < numOps; k++ {
			if got := float64(counts[k]) / draws; math.Abs(got-mix[k]) > 0.02 {
				t.Errorf("ycsb %s: %s share %.3f, want %.2f", name, k, got, mix[k])
			}
		}
	}
	if s, _ := YCSBSpec(YCSBOptions{Workload: "d", Keys: 10, KeySize: 16, MaxScanLength: 1}); s.Dist != distLatest || s.Name != "ycsb-D" {
		t.Errorf("ycsb d: dist %q name %q", s.Dist, s.Name)
	}
	if _, err := YCSBSpec(YCSBOptions{Workload: "G", Keys: 10, KeySize: 16}); err == nil {
		t.Error("workload G accepted")
	}
	if _, err := YCSBSpec(YCSBOptions{Workload: "A", Dist: distLatest, Keys: 10, KeySize: 16}); err == nil {
		t.Error("latest keys without inserts accepted")
	}
}

func TestKVSpec(t *testing.T) {
	s, err := KVSpec(KVOptions{ReadFraction: 0.9, Keys: 100, KeySize: 16, ValueSize: 8})
	if err != nil || s.Read != 0.9 || math.Abs(s.Update-0.1) > 1e-9 || s.Dist != distUniform {
		t.Fatalf("kv spec %+v, %v", s, err)
	}
	for _, o := range []KVOptions{
		{ReadFraction: 1.5, Keys: 100, KeySize: 16},
		{ReadFraction: 0.5, Keys: 0, KeySize: 16},
		{ReadFraction: 0.5, Keys: 100, KeySize: 3},
		{ReadFraction: 0.5, Keys: 100, KeySize: 16, Dist: "pareto"},
	} {
		if _, err := KVSpec(o); err == nil {
			t.Errorf("kv options %+v accepted", o)
		}
	}
}

// TestReadModifyWriteComparesOnRevisionRead checks that F's rmw sends the
// mod revision it read, and 0 for a missing key, and reports conflicts.
func TestReadModifyWriteComparesOnRevisionRead(t *testing.T) {
	spec, _ := YCSBSpec(YCSBOptions{Workload: "F", Keys: 10, KeySize: 16, ValueSize: 4})
	wl, _ := newWorkload(spec, 1)
	wk := wl.newWorker(0)
	d := newMemDriver()
	ctx := context.Background()
	if oc, err := wk.do(ctx, d, opRMW); err != nil || oc != outcomeMiss {
		t.Fatalf("rmw of a missing key: %v, %v", oc, err)
	}
	for i := 0; i < 50; i++ {
		if oc, err := wk.do(ctx, d, opRMW); err != nil || oc == outcomeConflict {
			t.Fatalf("uncontended rmw: %v, %v", oc, err)
		}
	}
	d.bumpOnRead = true // another writer slips in between Get and Put
	if oc, err := wk.do(ctx, d, opRMW); err != nil || oc != outcomeConflict {
		t.Fatalf("contended rmw: %v, %v", oc, err)
	}
}

// Workloads D and E insert new keys; D's reads then favour them.
func TestInsertsGrowTheKeySpace(t *testing.T) {
	for _, name := range []string{"D", "E"} {
		spec, err := YCSBSpec(YCSBOptions{Workload: name, Keys: 200, KeySize: 16, ValueSize: 8, MaxScanLength: 10})
		if err != nil {
			t.Fatal(err)
		}
		d := newMemDriver()
		cfg := RunConfig{Clients: 4, Total: 4000, Seed: 3}
		if err := Load(context.Background(), cfg, spec, d); err != nil {
			t.Fatal(err)
		}
		rep, err := Run(context.Background(), cfg, spec, d)
		if err != nil {
			t.Fatal(err)
		}
		var inserts int64
		for _, o := range rep.Ops {
			if o.Op == "insert" {
				inserts = o.Count
			}
			if o.Misses != 0 || o.Errors != 0 {
				t.Errorf("ycsb %s %s: %d misses, %d errors", name, o.Op, o.Misses, o.Errors)
			}
		}
		if inserts < 100 || len(d.kvs) != 200+int(inserts) {
			t.Errorf("ycsb %s: %d inserts, %d keys stored", name, inserts, len(d.kvs))
		}
	}
}
