package bench

import "fmt"

// KVOptions are the kv workload's knobs.
type KVOptions struct {
	// ReadFraction is the share of operations that are reads; the rest are
	// updates (blind puts of existing keys).
	ReadFraction float64
	// Dist is uniform (the default), zipfian or sequential.
	Dist               string
	Keys               uint64
	KeySize, ValueSize int
}

// KVSpec returns the kv workload: reads and blind updates of a fixed key
// space, in the proportion ReadFraction.
func KVSpec(o KVOptions) (Spec, error) {
	if o.ReadFraction < 0 || o.ReadFraction > 1 {
		return Spec{}, fmt.Errorf("--read-fraction must be in [0, 1], got %g", o.ReadFraction)
	}
	if o.Dist == "" {
		o.Dist = distUniform
	}
	if o.Dist == distLatest {
		return Spec{}, fmt.Errorf("--key-dist latest needs inserts; the kv workload has none (use uniform, zipfian or sequential)")
	}
	s := Spec{
		Name:      "kv",
		Read:      o.ReadFraction,
		Update:    1 - o.ReadFraction,
		Dist:      o.Dist,
		Keys:      o.Keys,
		KeySize:   o.KeySize,
		ValueSize: o.ValueSize,
	}
	return s, s.Validate()
}
