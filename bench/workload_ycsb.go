package bench

import (
	"fmt"
	"strings"
)

// The YCSB core workloads, as in YCSB's workloads/workload[a-f] files. Keys
// are zipfian (D: latest) unless overridden; YCSB's 10 fields of 100 bytes
// are one value of --value-size bytes; reads and updates touch the whole
// value.
var ycsbWorkloads = map[string]Spec{
	// A: update heavy, e.g. a session store recording recent actions.
	"A": {Read: 0.5, Update: 0.5, Dist: distZipfian},
	// B: read mostly, e.g. photo tagging.
	"B": {Read: 0.95, Update: 0.05, Dist: distZipfian},
	// C: read only, e.g. a user profile cache.
	"C": {Read: 1, Dist: distZipfian},
	// D: read latest, e.g. status updates: new keys are inserted and the
	// newest are read most.
	"D": {Read: 0.95, Insert: 0.05, Dist: distLatest},
	// E: short ranges, e.g. threaded conversations: scans of 1..max keys
	// (uniform) from a zipfian start key, plus inserts.
	"E": {Scan: 0.95, Insert: 0.05, Dist: distZipfian},
	// F: read-modify-write, e.g. a user database: half reads, half
	// Get-then-compare-and-set on the mod revision read.
	"F": {Read: 0.5, RMW: 0.5, Dist: distZipfian},
}

// YCSBOptions select and size a YCSB core workload.
type YCSBOptions struct {
	// Workload is A..F (case does not matter).
	Workload string
	// Dist overrides the workload's key distribution when not empty.
	Dist               string
	Keys               uint64
	KeySize, ValueSize int
	// MaxScanLength bounds workload E's scans (YCSB's default: 100).
	MaxScanLength int
}

// YCSBSpec returns the named YCSB core workload.
func YCSBSpec(o YCSBOptions) (Spec, error) {
	name := strings.ToUpper(strings.TrimPrefix(strings.ToLower(o.Workload), "workload"))
	s, ok := ycsbWorkloads[name]
	if !ok {
		return Spec{}, fmt.Errorf("unknown YCSB workload %q (want A, B, C, D, E or F)", o.Workload)
	}
	s.Name = "ycsb-" + name
	if o.Dist != "" {
		s.Dist = o.Dist
	}
	if s.Dist == distLatest && s.Insert == 0 {
		return Spec{}, fmt.Errorf("--key-dist latest needs inserts; workload %s has none", name)
	}
	s.Keys, s.KeySize, s.ValueSize, s.MaxScanLength = o.Keys, o.KeySize, o.ValueSize, o.MaxScanLength
	return s, s.Validate()
}
