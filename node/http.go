package node

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The node's HTTP endpoint serves operators, never clients:
//
//	/metrics          Prometheus metrics of this node (its own registry)
//	/healthz          200 while the process serves HTTP at all (liveness)
//	/readyz           200 once the node serves requests, 503 with a reason otherwise
//	/debug/pprof/...  Go profiles (net/http/pprof on the node's own mux)
//
// It is plain HTTP without authentication even when the gRPC planes use
// TLS: bind it to a loopback or private interface (pprof exposes command
// lines and memory contents).

// httpEndpoint is the node's HTTP server, if it has one.
type httpEndpoint struct {
	srv      *http.Server
	lis      net.Listener
	done     chan struct{}
	stopping atomic.Bool
}

// registerRuntimeCollectors adds the Go runtime and process collectors to
// the node's registry. Several nodes of one process (tests, demo) each
// have their own registry; one that already has them is left as it is.
func registerRuntimeCollectors(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// gatherer returns what /metrics serves: Config.Gatherer, or the registry
// itself when it can gather (a *prometheus.Registry can).
func (c *Config) gatherer() (prometheus.Gatherer, error) {
	if c.Gatherer != nil {
		return c.Gatherer, nil
	}
	if g, ok := c.Registry.(prometheus.Gatherer); ok {
		return g, nil
	}
	return nil, fmt.Errorf("the HTTP endpoint needs Config.Gatherer: Config.Registry (%T) cannot gather", c.Registry)
}

// startHTTP starts the HTTP endpoint if HTTPAddr or HTTPListener is set.
// The gRPC server is already serving when it is called.
func (n *Node) startHTTP() error {
	if n.cfg.HTTPListener == nil && n.cfg.HTTPAddr == "" {
		return nil
	}
	g, err := n.cfg.gatherer()
	if err != nil {
		return err
	}
	lis := n.cfg.HTTPListener
	if lis == nil {
		if lis, err = net.Listen("tcp", n.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("http endpoint: %w", err)
		}
	}
	h := &httpEndpoint{lis: lis, done: make(chan struct{})}
	h.srv = &http.Server{
		Handler:           n.httpMux(g, h),
		ReadHeaderTimeout: 10 * time.Second,
	}
	n.http = h
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("http server stopped", "error", err)
		}
	}()
	n.logger.Info("http endpoint started", "addr", lis.Addr().String())
	return nil
}

// stopHTTP marks the node not ready and closes the HTTP endpoint; requests
// in flight (a CPU profile, say) are cut off.
func (n *Node) stopHTTP() {
	h := n.http
	if h == nil {
		return
	}
	h.stopping.Store(true)
	h.srv.Close()
	<-h.done
}

// HTTPAddr returns the address of the HTTP endpoint, or "" if it has none.
func (n *Node) HTTPAddr() string {
	if n.http == nil {
		return ""
	}
	return n.http.lis.Addr().String()
}

func (n *Node) httpMux(g prometheus.Gatherer, h *httpEndpoint) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slogPromLogger{n},
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		reason := n.notReadyReason()
		if h.stopping.Load() {
			reason = "node is stopping"
		}
		if reason != "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", reason)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	// The pprof handlers of net/http/pprof, on this mux rather than on
	// http.DefaultServeMux (importing the package registers them there
	// too, but nothing here serves that mux). Index serves the named
	// profiles (heap, goroutine, allocs, block, mutex, ...).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// The storage engine's own report: per-level sizes, bytes flushed and
	// compacted (write amplification), caches, the WAL.
	mux.HandleFunc("GET /debug/pebble", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, n.db.Metrics().String())
	})
	return mux
}

// notReadyReason returns why the node should not be sent requests yet, or
// "" if it is ready. The gRPC listener is bound and served before the HTTP
// endpoint starts, so a node that answers here accepts gRPC connections;
// what remains is that every local range knows its leader (a node holding
// no replica forwards everything and is ready as soon as it serves).
func (n *Node) notReadyReason() string {
	var leaderless, first uint64
	rs := n.allReplicas()
	for _, r := range rs {
		if _, leader := r.Leader(); leader == 0 {
			if leaderless == 0 {
				first = r.RangeID()
			}
			leaderless++
		}
	}
	if leaderless > 0 {
		return fmt.Sprintf("%d of %d local ranges know no leader (range %d among them)", leaderless, len(rs), first)
	}
	return ""
}

// slogPromLogger sends promhttp's errors (a collector failing) to the
// node's logger.
type slogPromLogger struct{ n *Node }

func (l slogPromLogger) Println(v ...any) {
	l.n.logger.Error("metrics endpoint", "error", fmt.Sprint(v...))
}
