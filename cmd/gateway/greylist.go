package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/mxgate/mxgate/checks/greylist"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/greystore"
)

const greylistUsage = `usage: gateway greylist <list|allow|release|delete> --config FILE [flags] [arg]

  list [--json]            every triplet and allowed client, with expiry
  allow [--for 30m] WHAT   let an address, a network or a sender domain
                           through without greylisting for a while
                           (e.g. a domain sending one-time codes)
  release REF              let the triplet first deferred with reference
                           id REF through on its next try
  delete KEY               forget a triplet or an allow entry (as list shows it)
`

// greylistCmd works on the store the configuration names, so it sees what
// every gateway sharing that store sees.
func greylistCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, greylistUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("greylist "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/mxgate/config.yaml", "configuration file")
	asJSON := fs.Bool("json", false, "list as JSON")
	dur := fs.Duration("for", 30*time.Minute, "how long an allow entry lasts")
	if fs.Parse(args) != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	g := cfg.Checks.Greylist
	st, err := greystore.Open(g.Store, cfg.DataDir)
	if err != nil {
		fmt.Fprintf(stderr, "gateway greylist: opening %s: %v\n", g.Store, err)
		return 1
	}
	defer st.Close()
	gl := greylist.New(st, greylist.Options{Delay: g.Delay, RetryWindow: g.RetryWindow, AllowFor: g.AllowFor, PrefixV4: g.PrefixV4, PrefixV6: g.PrefixV6})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	arg := fs.Arg(0)
	need := func() bool {
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "gateway greylist %s: give exactly one argument\n\n%s", sub, greylistUsage)
			return false
		}
		return true
	}
	switch sub {
	case "list":
		entries, err := gl.List(ctx)
		if err != nil {
			fmt.Fprintln(stderr, "gateway greylist list:", err)
			return 1
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetEscapeHTML(false)
			for _, e := range entries {
				enc.Encode(e)
			}
			return 0
		}
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tKEY\tFIRST SEEN\tPASSES AT\tEXPIRES\tREF")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Kind, e.Key, stamp(e.FirstSeen), stamp(e.PassAt), stamp(e.Expires), e.Ref)
		}
		tw.Flush()
		return 0
	case "allow":
		if !need() {
			return 2
		}
		if err := gl.Allow(ctx, arg, *dur); err != nil {
			fmt.Fprintln(stderr, "gateway greylist allow:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s allowed without greylisting for %s\n", arg, *dur)
		return 0
	case "release":
		if !need() {
			return 2
		}
		ok, err := gl.Release(ctx, arg)
		if err != nil {
			fmt.Fprintln(stderr, "gateway greylist release:", err)
			return 1
		}
		if !ok {
			fmt.Fprintf(stderr, "gateway greylist release: no deferred triplet has reference id %s\n", arg)
			return 1
		}
		fmt.Fprintf(stdout, "%s released: it passes on its next try\n", arg)
		return 0
	case "delete":
		if !need() {
			return 2
		}
		ok, err := gl.Delete(ctx, arg)
		if err != nil {
			fmt.Fprintln(stderr, "gateway greylist delete:", err)
			return 1
		}
		if !ok {
			fmt.Fprintf(stderr, "gateway greylist delete: no entry %s\n", arg)
			return 1
		}
		fmt.Fprintf(stdout, "%s deleted\n", arg)
		return 0
	}
	fmt.Fprintf(stderr, "gateway greylist: unknown command %q\n\n%s", sub, greylistUsage)
	return 2
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
