package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vitamin-go/vitamin/service/admin"
)

const statusUsage = `Usage: vitamin status [-json] [-timeout 5s] ADDR

Prints the state of the service instance whose admin listener is at ADDR
("host:port" or a URL, such as 127.0.0.1:9091): breakers, retry budgets,
downstream instances and ejections, discovery staleness, consumers,
config sources and rejections, callers and automatic profiles.
`

// runStatus carries out "vitamin status".
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, statusUsage) }
	raw := fs.Bool("json", false, "print the JSON state as the admin API answers it")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	url := fs.Arg(0)
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/") + admin.PathState
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	body, err := fetch(ctx, url)
	if err != nil {
		fmt.Fprintf(stderr, "vitamin status: %v\n", err)
		return 1
	}
	if *raw {
		_, _ = stdout.Write(body)
		return 0
	}
	var st admin.State
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintf(stderr, "vitamin status: %s: not an admin state: %v\n", url, err)
		return 1
	}
	printState(stdout, st)
	return 0
}

func fetch(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(url + ": " + resp.Status)
	}
	return body, nil
}

// printState prints st as the page shows it, in tables.
func printState(out io.Writer, st admin.State) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	b := st.Build
	fmt.Fprintf(w, "%s  instance %s  version %s  %s  up %s\n", b.Service, b.Instance, or(b.Version, "-"), b.GoVersion,
		st.Time.Sub(b.Started).Round(time.Second))
	ready := "ready"
	if !st.Health.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "health: %s (%s)\n", ready, st.Health.Reason)

	section(w, "breakers", len(st.Breakers))
	if len(st.Breakers) > 0 {
		fmt.Fprintln(w, "POLICY\tSTATE\tFOR\tFAILURE RATE\tTHRESHOLD\tWINDOW\tNOT PERMITTED")
		for _, br := range st.Breakers {
			fmt.Fprintf(w, "%s\t%s\t%s\t%.1f%%\t%.1f%%\t%d/%d\t%d\n", br.Policy, strings.ToUpper(br.State),
				st.Time.Sub(br.Since).Round(time.Second), br.FailureRate*100, br.FailureRateThreshold*100,
				br.WindowCalls, br.MinRequests, br.NotPermitted)
		}
	}
	section(w, "policies", len(st.Policies))
	if len(st.Policies) > 0 {
		fmt.Fprintln(w, "POLICY\tCALLS\tFAILURES\tREJECTED\tRETRIES\tBUDGET LEFT\tBUDGET EXHAUSTED")
		for _, p := range st.Policies {
			left := "-"
			if p.BudgetLeft >= 0 {
				left = fmt.Sprintf("%.1f", p.BudgetLeft)
			}
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\t%d\n", p.Policy, p.Calls, p.Failures, p.Rejected, p.Retries, left, p.BudgetExhausted)
		}
	}
	section(w, "downstream services", len(st.Services))
	for _, s := range st.Services {
		disc := "fresh"
		switch {
		case !s.Discovery.Seen:
			disc = "no answer yet"
		case s.Discovery.Stale:
			disc = "STALE: " + s.Discovery.Err
		case s.Discovery.Preserved:
			disc = "preserved"
		}
		fmt.Fprintf(w, "%s (%s): discovery %s, last confirmed %s ago, %d ejected\n", s.Service, s.Kind, disc,
			st.Time.Sub(s.Discovery.LastConfirmed).Round(time.Second), s.Ejected)
		fmt.Fprintln(w, "  INSTANCE\tADDRESS\tLATENCY\tIN FLIGHT\tCALLS\tEJECTED")
		for _, in := range s.Instances {
			ej := "no"
			if in.Ejected {
				ej = fmt.Sprintf("EJECTED for %s more: %s", in.EjectedUntil.Sub(st.Time).Round(time.Second), in.EjectReason)
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t%d\t%d\t%s\n", in.ID, in.Address, in.Latency.Round(time.Microsecond), in.InFlight, in.Calls, ej)
		}
	}
	section(w, "consumers", len(st.Consumers))
	if len(st.Consumers) > 0 {
		fmt.Fprintln(w, "STREAM\tDURABLE\tPROCESSED\tRETRIED\tDEAD-LETTERED\tDUPLICATES")
		for _, c := range st.Consumers {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\n", c.Stream, c.Durable, c.Processed, c.Retried, c.DeadLettered, c.Duplicates)
		}
	}
	if c := st.Config; c != nil {
		section(w, "config rejections", len(c.Rejections))
		for _, s := range c.Sources {
			if s.Stale {
				fmt.Fprintf(w, "source %s is STALE\n", s.Name)
			}
		}
		for _, r := range c.Rejections {
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.Time.Local().Format("15:04:05"), r.Key, r.Reason)
		}
	}
	if c := st.Callers; c != nil {
		section(w, "callers", len(c.Callers))
		fmt.Fprintln(w, "CALLER\tCALLS\tRATE")
		for _, cs := range c.Callers {
			fmt.Fprintf(w, "%s\t%d\t%.1f/s\n", or(cs.Caller, "(none)"), cs.Calls, cs.Rate)
		}
	}
	p := st.Profiling
	fmt.Fprintf(w, "\nprofiles: %s\n", p.Status)
	for _, c := range p.Files {
		fmt.Fprintf(w, "  %s\t%s\t%s\n", c.Time.Local().Format("15:04:05"), c.Reason, strings.Join(c.Files, " "))
	}
}

func section(w io.Writer, name string, n int) { fmt.Fprintf(w, "\n%s (%d)\n", name, n) }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
