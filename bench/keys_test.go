package bench

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// rangeOf returns which of n evenly split bootstrap ranges holds key: range
// i starts at the 2-byte big-endian value i*65536/n.
func rangeOf(key []byte, n int) int {
	v := int(key[0])<<8 | int(key[1])
	return v * n / 65536
}

func TestKeysAreFixedWidthUniqueAndReadable(t *testing.T) {
	seen := map[string]bool{}
	for i := uint64(0); i < 20000; i++ {
		k := appendKey(nil, i, 16)
		if len(k) != 16 {
			t.Fatalf("key %d is %d bytes: %q", i, len(k), k)
		}
		if seen[string(k)] {
			t.Fatalf("key %d repeats: %q", i, k)
		}
		seen[string(k)] = true
	}
	if got := string(appendKey(nil, 42, 16)[2:]); got != "user0000000042" {
		t.Fatalf("key 42 after its prefix = %q, want user0000000042", got)
	}
	// A bigger key size pads with more zeros; the same index keeps its prefix.
	a, b := appendKey(nil, 7, 16), appendKey(nil, 7, 24)
	if !bytes.Equal(a[:2], b[:2]) || !strings.HasSuffix(string(b), "user000000000000000007") {
		t.Fatalf("key 7 at sizes 16 and 24: %q, %q", a, b)
	}
}

func TestCheckKeySpace(t *testing.T) {
	if err := checkKeySpace(10_000_000_000, 16); err != nil {
		t.Fatalf("10^10 keys fit in 10 digits: %v", err)
	}
	if err := checkKeySpace(10_000_000_001, 16); err == nil {
		t.Fatal("10^10+1 keys do not fit in 10 digits")
	}
	if err := checkKeySpace(10, minKeySize-1); err == nil {
		t.Fatal("a key size below the minimum was accepted")
	}
}

// The bootstrap split cuts by the first two key bytes; the hashed prefix
// must spread any number of keys evenly over the ranges.
func TestKeysSpreadEvenlyOverSixteenRanges(t *testing.T) {
	const ranges = 16
	for _, n := range []uint64{1000, 10000, 100000} {
		counts := make([]int, ranges)
		for i := uint64(0); i < n; i++ {
			counts[rangeOf(appendKey(nil, i, 16), ranges)]++
		}
		want := float64(n) / ranges
		for r, c := range counts {
			if float64(c) < 0.8*want || float64(c) > 1.2*want {
				t.Errorf("%d keys: range %d got %d keys, want %.0f ±20%% (all: %v)", n, r, c, want, counts)
			}
		}
	}
	// The hottest zipfian keys are the lowest indices: they too must not
	// pile up in one range.
	hot := map[int]bool{}
	for i := uint64(0); i < ranges; i++ {
		hot[rangeOf(appendKey(nil, i, 16), ranges)] = true
	}
	if len(hot) < ranges*3/4 {
		t.Errorf("keys 0..15 fall in only %d of %d ranges", len(hot), ranges)
	}
}

func sample(t *testing.T, dist string, ks *keySpace, n int) []uint64 {
	t.Helper()
	var z *zipfParams
	if dist == distZipfian || dist == distLatest {
		z = newZipfParams(ks.base, zipfianTheta)
	}
	c, err := newChooser(dist, ks, z, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = c.next()
	}
	return out
}

func histogram(xs []uint64, n uint64) []int {
	counts := make([]int, n)
	for _, x := range xs {
		counts[x]++
	}
	return counts
}

func TestUniformCoversTheSpace(t *testing.T) {
	const keys, draws = 1000, 200000
	counts := histogram(sample(t, distUniform, newKeySpace(keys), draws), keys)
	for i, c := range counts {
		// Expected 200 each; ±50% is over 7 standard deviations.
		if c < 100 || c > 300 {
			t.Fatalf("key %d drawn %d times, want about %d", i, c, draws/keys)
		}
	}
}

func TestZipfianIsSkewed(t *testing.T) {
	const keys, draws = 1000, 200000
	xs := sample(t, distZipfian, newKeySpace(keys), draws)
	counts := histogram(xs, keys)
	uniform := draws / keys
	// P(key 0) = 1/zeta(1000, 0.99) ≈ 13%, about 130 times the uniform share.
	if counts[0] < 50*uniform {
		t.Errorf("hottest key drawn %d times, want far more than the uniform %d", counts[0], uniform)
	}
	if !(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]) {
		t.Errorf("popularity does not fall with rank: key0 %d, key1 %d, key10 %d, key500 %d", counts[0], counts[1], counts[10], counts[500])
	}
	// The tail is still reached.
	tail := 0
	for _, c := range counts[keys/2:] {
		tail += c
	}
	if tail == 0 {
		t.Error("no draw in the upper half of the key space")
	}
}

func TestSequentialIsInOrderAcrossWorkers(t *testing.T) {
	ks := newKeySpace(10)
	a, _ := newChooser(distSequential, ks, nil, nil)
	b, _ := newChooser(distSequential, ks, nil, nil)
	var got []uint64
	for i := 0; i < 12; i++ {
		c := a
		if i%3 == 0 {
			c = b
		}
		got = append(got, c.next())
	}
	want := []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sequential draws = %v, want %v", got, want)
		}
	}
}

func TestLatestFavoursNewestKeys(t *testing.T) {
	ks := newKeySpace(1000)
	for i := 0; i < 500; i++ {
		ks.finished(ks.insert())
	}
	counts := histogram(sample(t, distLatest, ks, 100000), ks.count())
	newest := ks.count() - 1
	if counts[newest] < 50*100000/int(ks.count()) {
		t.Errorf("newest key drawn %d times of 100000", counts[newest])
	}
	if counts[newest] <= counts[newest-10] || counts[newest-10] <= counts[0] {
		t.Errorf("recency does not rule: newest %d, newest-10 %d, oldest %d", counts[newest], counts[newest-10], counts[0])
	}
}

func TestValuesAreDeterministic(t *testing.T) {
	a := newValuePool(100, 7).value(rand.New(rand.NewPCG(1, 1)))
	b := newValuePool(100, 7).value(rand.New(rand.NewPCG(1, 1)))
	c := newValuePool(100, 8).value(rand.New(rand.NewPCG(1, 1)))
	if len(a) != 100 || !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Fatalf("values: same seed equal %v, other seed differs %v, len %d", bytes.Equal(a, b), !bytes.Equal(a, c), len(a))
	}
}

// Reads see an inserted key only once every insert below it has finished.
func TestKeySpaceCountsOnlyFinishedInserts(t *testing.T) {
	ks := newKeySpace(10)
	a, b, c := ks.insert(), ks.insert(), ks.insert()
	ks.finished(b)
	ks.finished(c)
	if got := ks.count(); got != 10 {
		t.Fatalf("count with insert %d in flight = %d, want 10", a, got)
	}
	ks.finished(a)
	if got := ks.count(); got != 13 {
		t.Fatalf("count after all inserts = %d, want 13", got)
	}
}
