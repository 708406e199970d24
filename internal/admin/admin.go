// Package admin is mxgate's admin HTTP listener: /metrics (the Prometheus
// registry of internal/metrics, with the Go runtime and process
// collectors), /healthz (the process is alive) and /readyz (the gateway
// can take mail). Every other path is 404 and every method but GET and
// HEAD is 405.
//
// The listener is opened once, at start: admin.listen is not changed by a
// reload (SIGHUP); a new address needs a restart. Put it on loopback (or
// behind something that controls access): it has no authentication.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mxgate/mxgate/internal/metrics"
)

// Timeouts of the HTTP server. A scrape or a readiness probe is small; the
// limits keep a slow or stuck client from holding a connection open.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 60 * time.Second
)

// Options configures the admin listener.
type Options struct {
	// Listen is the host:port to listen on ("127.0.0.1:0" picks a port).
	Listen string
	// Ready reports whether the gateway can take mail: nil is ready, an
	// error is the reason it is not (sent as the /readyz body). It is
	// called with the request's context on every /readyz; nil Ready means
	// always ready.
	Ready func(ctx context.Context) error
	// DNSStats returns the resolver's counters at scrape time, exported as
	// gateway_dns_queries_total, gateway_dns_cache_hits_total and
	// gateway_dns_cache_misses_total. Nil: not exported.
	DNSStats func() (queries, hits, misses uint64)
	// RelayStats returns the backend connection pool's sizes at scrape
	// time, exported as gateway_relay_connections{state}. Nil: not
	// exported.
	RelayStats func() (open, idle, inUse int)
	// Pprof serves net/http/pprof under /debug/pprof/ (admin.pprof).
	// Profiles must be shorter than the listener's write timeout (10 s).
	Pprof bool
	// Log receives the listener's own messages; nil discards them.
	Log *slog.Logger
}

// Server is a running admin listener.
type Server struct {
	http  *http.Server
	ln    net.Listener
	log   *slog.Logger
	src   *statsSource
	done  chan struct{} // closed when Serve has returned
	close sync.Once
	err   error

	mu      sync.Mutex
	closing bool
	fresh   map[net.Conn]struct{} // connections that have not sent a request yet
}

// Start listens on o.Listen (an error if the address cannot be had) and
// serves in the background until Close.
func Start(o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	registerOnce.Do(registerCollectors)
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s := &Server{ln: ln, log: o.Log, done: make(chan struct{}), fresh: map[net.Conn]struct{}{}}
	s.src = &statsSource{dns: o.DNSStats, relay: o.RelayStats}
	source.Store(s.src)
	s.http = &http.Server{
		Handler:           newHandler(o),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn),
		ConnState:         s.connState,
	}
	if !loopback(ln.Addr()) {
		o.Log.Warn("admin listener is not on loopback; it has no authentication", "address", s.Addr())
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Log.Error("admin listener failed", "err", err)
		}
	}()
	o.Log.Info("admin listening", "address", s.Addr())
	return s, nil
}

// Addr returns the address the listener is bound to.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting, lets requests in flight finish until ctx is done,
// then closes every connection; it returns when the server's goroutines
// are gone. Calling it again returns the first call's result.
func (s *Server) Close(ctx context.Context) error {
	s.close.Do(func() {
		// http.Server.Shutdown waits up to 5 s for a connection that has
		// not sent a request; on an admin listener that is no work in
		// flight, so it is closed at once.
		s.mu.Lock()
		s.closing = true
		for c := range s.fresh {
			c.Close()
		}
		s.mu.Unlock()
		err := s.http.Shutdown(ctx)
		if err != nil {
			s.http.Close() // ctx is done: cut what is left
		}
		<-s.done
		// Stop exporting this server's stats unless a newer one took over.
		source.CompareAndSwap(s.src, nil)
		s.err = err
	})
	return s.err
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case st == http.StateNew && s.closing:
		c.Close() // accepted as Close began
	case st == http.StateNew:
		s.fresh[c] = struct{}{}
	default:
		delete(s.fresh, c)
	}
}

func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func newHandler(o Options) http.Handler {
	metricsH := promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{
		ErrorLog:      promLog{o.Log},
		ErrorHandling: promhttp.ContinueOnError,
		// Bounds the gathering work a scrape storm can cause.
		MaxRequestsInFlight: 4,
		Timeout:             writeTimeout - time.Second,
	})
	ready := o.Ready
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h http.Handler
		switch r.URL.Path {
		case "/metrics":
			h = metricsH
		case "/healthz":
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { text(w, http.StatusOK, "ok") })
		case "/readyz":
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if ready != nil {
					if err := ready(r.Context()); err != nil {
						text(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
						return
					}
				}
				text(w, http.StatusOK, "ok")
			})
		default:
			if o.Pprof && strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
				h = pprofHandler(r.URL.Path)
				break
			}
			text(w, http.StatusNotFound, "not found")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			text(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func text(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, body)
}

// promLog adapts promhttp's error logger to slog.
type promLog struct{ log *slog.Logger }

func (l promLog) Println(v ...any) { l.log.Warn("metrics: " + fmt.Sprint(v...)) }

// pprofHandler is net/http/pprof's handler for path, without the package's
// registration on http.DefaultServeMux.
func pprofHandler(path string) http.Handler {
	switch strings.TrimPrefix(path, "/debug/pprof/") {
	case "cmdline":
		return http.HandlerFunc(pprof.Cmdline)
	case "profile":
		return http.HandlerFunc(pprof.Profile)
	case "symbol":
		return http.HandlerFunc(pprof.Symbol)
	case "trace":
		return http.HandlerFunc(pprof.Trace)
	}
	return http.HandlerFunc(pprof.Index)
}
