package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

func newSummaryCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "summary FILE|DIR...",
		Short: "Tabulate --json reports, RaftrixDB beside etcd",
		Long: `summary reads the JSON reports of several runs (files, or every *.json in a
directory) and prints one Markdown row per run name (--label, else the
workload) and client count, with RaftrixDB's and etcd's throughput and
latency side by side and their ratios: ops/s raftrix/etcd above 1 means
RaftrixDB is faster, p50 and p99 raftrix/etcd above 1 mean it is slower.
When the reports measured CPU (bench --cpu-pids), CPU µs/op columns show
the CPU time of the servers and the bench client per completed operation,
and CPU µs/op raftrix/etcd above 1 means RaftrixDB spends more.
Several reports of one row and store are averaged.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var reps []*Report
			for _, a := range args {
				paths := []string{a}
				if fi, err := os.Stat(a); err == nil && fi.IsDir() {
					if paths, err = filepath.Glob(filepath.Join(a, "*.json")); err != nil {
						return err
					}
				}
				for _, p := range paths {
					rep, err := ReadJSONFile(p)
					if err != nil {
						return err
					}
					reps = append(reps, rep)
				}
			}
			return WriteSummary(stdout, reps)
		},
	}
}

// summaryCell is one store's numbers in one summary row, averaged over its
// reports.
type summaryCell struct {
	n                 int
	opsPerSec         float64
	p50Us, p99Us      float64
	count             int64
	errors, conflicts int64
	errorsByCode      map[string]int64
	bankNotConserved  int
	// cpuN counts the reports that measured CPU; cpuUsPerOp sums theirs.
	cpuN, cpuExited int
	cpuUsPerOp      float64
}

func (c *summaryCell) add(rep *Report) {
	c.n++
	c.opsPerSec += rep.Total.OpsPerSec
	c.p50Us += float64(rep.Total.LatencyUs.P50)
	c.p99Us += float64(rep.Total.LatencyUs.P99)
	c.count += rep.Total.Count
	c.errors += rep.Total.Errors
	c.conflicts += rep.Total.Conflicts
	for code, n := range rep.Total.ErrorsByCode {
		if c.errorsByCode == nil {
			c.errorsByCode = map[string]int64{}
		}
		c.errorsByCode[code] += n
	}
	if rep.Bank != nil && !rep.Bank.Conserved {
		c.bankNotConserved++
	}
	if rep.CPUUsPerOp > 0 {
		c.cpuN++
		c.cpuUsPerOp += rep.CPUUsPerOp
		if len(rep.CPUPidsExited) > 0 {
			c.cpuExited++
		}
	}
}

func (c *summaryCell) mean(v float64) float64 { return v / float64(c.n) }

// cpu returns the mean CPU µs per operation, 0 when no report has it.
func (c *summaryCell) cpu() float64 {
	if c == nil || c.cpuN == 0 {
		return 0
	}
	return c.cpuUsPerOp / float64(c.cpuN)
}

// WriteSummary prints reps as a Markdown table, one row per run name and
// client count in the order they first ran, RaftrixDB beside etcd.
func WriteSummary(w io.Writer, reps []*Report) error {
	sort.SliceStable(reps, func(i, j int) bool { return reps[i].Start.Before(reps[j].Start) })
	type rowKey struct {
		name    string
		clients int
	}
	var order []rowKey
	cells := map[rowKey]map[string]*summaryCell{}
	for _, rep := range reps {
		name := rep.Label
		if name == "" {
			name = rep.Workload
		}
		k := rowKey{name, rep.Clients}
		if cells[k] == nil {
			cells[k] = map[string]*summaryCell{}
			order = append(order, k)
		}
		c := cells[k][rep.Driver]
		if c == nil {
			c = &summaryCell{}
			cells[k][rep.Driver] = c
		}
		c.add(rep)
	}
	// The CPU columns appear only when some report measured CPU.
	withCPU := false
	for _, rep := range reps {
		withCPU = withCPU || rep.CPUUsPerOp > 0
	}
	store := func(d string) string {
		h := d + " ops/s | " + d + " p50 ms | " + d + " p99 ms"
		if withCPU {
			h += " | " + d + " CPU µs/op"
		}
		return h
	}
	header := "| workload | clients | " + store(DriverRaftrix) + " | " + store(DriverEtcd) + " | ops/s raftrix/etcd | p50 raftrix/etcd | p99 raftrix/etcd"
	align := "|---|--:|" + strings.Repeat("--:|", 9)
	if withCPU {
		header += " | CPU µs/op raftrix/etcd"
		align += strings.Repeat("--:|", 3)
	}
	fmt.Fprintln(w, header+" | notes |")
	fmt.Fprintln(w, align+"---|")
	for _, k := range order {
		rx, et := cells[k][DriverRaftrix], cells[k][DriverEtcd]
		row := []string{k.name, fmt.Sprint(k.clients)}
		row = append(row, cellColumns(rx, withCPU)...)
		row = append(row, cellColumns(et, withCPU)...)
		if rx != nil && et != nil {
			row = append(row,
				ratio(rx.mean(rx.opsPerSec), et.mean(et.opsPerSec)),
				ratio(rx.mean(rx.p50Us), et.mean(et.p50Us)),
				ratio(rx.mean(rx.p99Us), et.mean(et.p99Us)))
		} else {
			row = append(row, "–", "–", "–")
		}
		if withCPU {
			r := "–"
			if rx.cpu() > 0 && et.cpu() > 0 {
				r = ratio(rx.cpu(), et.cpu())
			}
			row = append(row, r)
		}
		var notes []string
		for _, d := range []struct {
			name string
			c    *summaryCell
		}{{DriverRaftrix, rx}, {DriverEtcd, et}} {
			if d.c == nil {
				continue
			}
			if d.c.errors > 0 {
				notes = append(notes, fmt.Sprintf("%s errors %s", d.name, formatCodes(d.c.errorsByCode)))
			}
			if d.c.conflicts > 0 && d.c.count > 0 {
				notes = append(notes, fmt.Sprintf("%s conflicts %.1f%%", d.name, 100*float64(d.c.conflicts)/float64(d.c.count)))
			}
			if d.c.bankNotConserved > 0 {
				notes = append(notes, fmt.Sprintf("%s BANK TOTAL NOT CONSERVED", d.name))
			}
			if d.c.cpuExited > 0 {
				notes = append(notes, fmt.Sprintf("%s CPU too low: a server exited in %d of %d runs", d.name, d.c.cpuExited, d.c.n))
			}
			if d.c.n > 1 {
				notes = append(notes, fmt.Sprintf("%s mean of %d runs", d.name, d.c.n))
			}
		}
		row = append(row, strings.Join(notes, "; "))
		if _, err := fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |"); err != nil {
			return err
		}
	}
	return nil
}

func cellColumns(c *summaryCell, withCPU bool) []string {
	cols := []string{"–", "–", "–"}
	if c != nil {
		cols = []string{
			fmt.Sprintf("%.0f", c.mean(c.opsPerSec)),
			fmt.Sprintf("%.2f", c.mean(c.p50Us)/1000),
			fmt.Sprintf("%.2f", c.mean(c.p99Us)/1000),
		}
	}
	if withCPU {
		cpu := "–"
		if v := c.cpu(); v > 0 {
			cpu = fmt.Sprintf("%.0f", v)
		}
		cols = append(cols, cpu)
	}
	return cols
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}
