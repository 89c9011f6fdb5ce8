package bench

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/raftrix/raftrixdb/node"
)

// Every txn key must lie in the range the layout says, judged by the real
// bootstrap split of `raftrix start --ranges R`.
func TestTxnKeysLieInTheirRange(t *testing.T) {
	for _, ranges := range []int{1, 3, 16, 64, 1000, maxRanges} {
		descs, err := node.InitialDescriptors([]uint64{1, 2, 3}, ranges, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The last descriptor is the system range.
		if len(descs) != ranges+1 {
			t.Fatalf("ranges=%d: %d descriptors", ranges, len(descs))
		}
		l := rangeLayout{ranges: ranges}
		keys := uint64(20 * ranges)
		for i := uint64(0); i < keys; i++ {
			k := appendTaggedKey(nil, l.prefix(i), txnKeyTag, i, 16)
			d := descs[l.rangeOf(i)]
			if bytes.Compare(k, d.StartKey) < 0 || (len(d.EndKey) > 0 && bytes.Compare(k, d.EndKey) >= 0) {
				t.Fatalf("ranges=%d: key %d %q is in range %d's slot but outside [%q, %q)", ranges, i, k, l.rangeOf(i), d.StartKey, d.EndKey)
			}
		}
	}
}

// Within a range, keys spread over the range's whole span: a later split in
// the middle would still find keys on both sides.
func TestTxnKeysSpreadWithinTheirRange(t *testing.T) {
	l := rangeLayout{ranges: 64}
	for _, r := range []int{0, 17, 63} {
		lo, hi := l.rangeStart(r), l.rangeStart(r+1)
		mid := (lo + hi) / 2
		below := 0
		const n = 2000
		for j := uint64(0); j < n; j++ {
			if uint32(l.prefix(l.index(r, j))) < mid {
				below++
			}
		}
		if below < n*4/10 || below > n*6/10 {
			t.Errorf("range %d [%#x, %#x): %d of %d keys below the middle", r, lo, hi, below, n)
		}
	}
}

func TestPickTxnKeysSpansTheRangesAsked(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const ranges, keys = 64, 10000
	l := rangeLayout{ranges: ranges}
	for _, shape := range []struct{ k, n int }{{1, 1}, {4, 1}, {4, 4}, {4, 2}, {5, 3}, {32, 32}} {
		rangeHits := make([]int, ranges)
		for draw := 0; draw < 2000; draw++ {
			idx := l.pickTxnKeys(nil, rng, shape.k, shape.n, keys)
			if len(idx) != shape.k {
				t.Fatalf("%+v: %d keys", shape, len(idx))
			}
			perRange := map[int]int{}
			seen := map[uint64]bool{}
			for _, i := range idx {
				if i >= keys || seen[i] {
					t.Fatalf("%+v: key indices %v out of bounds or repeated", shape, idx)
				}
				seen[i] = true
				perRange[l.rangeOf(i)]++
			}
			if len(perRange) != shape.n {
				t.Fatalf("%+v: keys %v lie in %d ranges", shape, idx, len(perRange))
			}
			for r, c := range perRange {
				// Round-robin: no range gets more than its share rounded up.
				if c > (shape.k+shape.n-1)/shape.n {
					t.Fatalf("%+v: range %d got %d keys of %v", shape, r, c, idx)
				}
				rangeHits[r]++
			}
		}
		for r, h := range rangeHits {
			if h == 0 {
				t.Errorf("%+v: range %d never chosen in 2000 transactions", shape, r)
			}
		}
	}
	// The smallest key space allowed: every range holds exactly the keys a
	// transaction needs from it.
	idx := l.pickTxnKeys(nil, rng, 4, 1, ranges*4)
	if len(idx) != 4 {
		t.Fatalf("tight key space: %v", idx)
	}
}

func TestCheckTxnShape(t *testing.T) {
	if err := checkTxnShape(4, 4, 64, 10000); err != nil {
		t.Fatal(err)
	}
	if err := checkTxnShape(4, 1, 64, 256); err != nil {
		t.Fatalf("4 keys in each of 64 ranges are enough: %v", err)
	}
	for _, c := range []struct {
		k, n, ranges int
		keys         uint64
	}{
		{0, 1, 64, 1000}, {maxKeysPerTxn + 1, 1, 64, 100000}, // keys per txn
		{4, 0, 64, 1000}, {4, 5, 64, 1000}, // ranges per txn
		{4, 4, 3, 1000}, {4, 1, 0, 1000}, {4, 1, maxRanges + 1, 1 << 20}, // cluster ranges
		{4, 1, 64, 255}, {4, 2, 64, 127}, // too few keys per range
	} {
		if err := checkTxnShape(c.k, c.n, c.ranges, c.keys); err == nil {
			t.Errorf("shape %+v accepted", c)
		}
	}
}

// RaftrixDB refuses keys starting 0xFF 0xFF; no benchmark key may.
func TestNoKeyInTheSystemRange(t *testing.T) {
	if p := keyPrefix(46368); p != maxKeyPrefix {
		t.Fatalf("key 46368 (hash prefix 0xFFFF) got prefix %#x, want %#x", p, maxKeyPrefix)
	}
	for i := uint64(0); i < 1_000_000; i++ {
		if keyPrefix(i) > maxKeyPrefix {
			t.Fatalf("key %d has prefix %#x", i, keyPrefix(i))
		}
	}
	l := rangeLayout{ranges: 7}
	for i := uint64(0); i < 100_000; i++ {
		if l.prefix(i) > maxKeyPrefix {
			t.Fatalf("txn key %d has prefix %#x", i, l.prefix(i))
		}
	}
}
