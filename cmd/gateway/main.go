// Command gateway is mxgate, an inbound anti-spam SMTP gateway. main only
// parses the subcommand and its flags; the work is done in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/demo"
)

const usage = `usage: gateway <command> [flags]

commands:
  demo           run the gateway with embedded stand-ins and a guided tour (offline)
  serve          run the gateway (--config FILE)
  check-config   validate a configuration (--config FILE); exit 1 on any problem
  explain        run one transaction through the policy without SMTP:
                 --config FILE --ip IP --helo NAME --from ADDR --rcpt ADDR [--rcpt ...] [--json] [message.eml]
  greylist       inspect and edit the greylist store: list, allow, release, delete
  replay         re-decide recorded transactions under a policy:
                 --config FILE [--json] verdicts.jsonl...; exit 0 unchanged, 1 changed, 2 error
  version        print version and build information
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var err error
	switch cmd {
	case "serve":
		path := fs.String("config", "/etc/mxgate/config.yaml", "configuration file")
		if fs.Parse(args) != nil {
			return 2
		}
		err = daemon.Serve(context.Background(), *path, stderr)
	case "check-config":
		path := fs.String("config", "/etc/mxgate/config.yaml", "configuration file")
		if fs.Parse(args) != nil {
			return 2
		}
		if _, err := config.Load(*path); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", *path)
		return 0
	case "explain":
		return explainCmd(fs, args, stdout, stderr)
	case "replay":
		return replayCmd(fs, args, stdout, stderr)
	case "greylist":
		return greylistCmd(args, stdout, stderr)
	case "demo":
		listen := fs.String("listen", "127.0.0.1:2525", "address the demo gateway listens on")
		tour := fs.Bool("tour", true, "send the guided tour of example transactions")
		exit := fs.Bool("exit", false, "exit after the tour instead of serving until Ctrl-C")
		if fs.Parse(args) != nil {
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = demo.Run(ctx, demo.Options{Listen: *listen, Tour: *tour, Exit: *exit, Out: stdout, Err: stderr})
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gateway: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "gateway:", err)
		return 1
	}
	return 0
}

func version() string {
	v, rev := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " " + s.Value
			}
		}
	}
	return fmt.Sprintf("mxgate %s%s %s %s/%s", v, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
