package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/replay"
	"github.com/mxgate/mxgate/server"
)

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func explainCmd(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	path := fs.String("config", "/etc/mxgate/config.yaml", "configuration file")
	ip := fs.String("ip", "192.0.2.1", "client IP address")
	helo := fs.String("helo", "", "HELO/EHLO name")
	from := fs.String("from", "", "envelope sender (empty: the null sender)")
	tls := fs.Bool("tls", false, "the client used STARTTLS")
	asJSON := fs.Bool("json", false, "print the verdict record instead")
	var rcpts list
	fs.Var(&rcpts, "rcpt", "envelope recipient (repeat for several)")
	if fs.Parse(args) != nil {
		return 2
	}
	if len(rcpts) == 0 || fs.NArg() > 1 {
		fmt.Fprintln(stderr, "gateway explain: give at least one --rcpt, and at most one message file")
		return 2
	}
	addr, err := netip.ParseAddr(*ip)
	if err != nil {
		fmt.Fprintf(stderr, "gateway explain: --ip: %v\n", err)
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Greylisting is explained against an empty store of its own: the real
	// one belongs to the running gateways (and a bbolt file to one
	// process), and explaining must not change it.
	cfg.Checks.Greylist.Store = "memory"
	rt, err := server.NewRuntime(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "gateway explain:", err)
		return 2
	}
	defer rt.Relay.Close()
	in := server.ExplainInput{IP: addr, Helo: *helo, From: *from, Rcpts: rcpts, TLS: *tls}
	if fs.NArg() == 1 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintln(stderr, "gateway explain:", err)
			return 2
		}
		defer f.Close()
		in.Message = f
	}
	ex, err := server.Explain(rt, in, log)
	if err != nil {
		fmt.Fprintln(stderr, "gateway explain:", err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		enc.Encode(ex.Record)
		return 0
	}
	ex.Print(stdout, rt)
	return 0
}

func replayCmd(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	path := fs.String("config", "/etc/mxgate/config.yaml", "configuration file with the policy to replay under")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if fs.Parse(args) != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "gateway replay: give one or more verdict files")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	changed := false
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(stderr, "gateway replay:", err)
			return 2
		}
		rep, err := replay.Run(cfg.Policy.Engine, f, name)
		f.Close()
		if err != nil {
			fmt.Fprintln(stderr, "gateway replay:", err)
			return 2
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetEscapeHTML(false)
			enc.Encode(struct {
				File string `json:"file"`
				*replay.Report
			}{name, rep})
		} else {
			fmt.Fprintf(stdout, "%s: ", name)
			rep.Print(stdout)
		}
		changed = changed || rep.Changed > 0
	}
	if changed {
		return 1
	}
	return 0
}
