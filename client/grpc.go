package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/internal/backoff"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/resilience/resiliencegrpc"
	"github.com/vitamin-go/vitamin/tracing/tracinggrpc"
)

// BalancerName is the name of Vitamin's gRPC load balancing policy in
// grpc-go's balancer registry. NewGRPC selects it through the connection's
// default service config.
//
// grpc-go chooses a connection's balancer only by name, from a process-wide
// registry. Everything that belongs to one connection — instances,
// latencies, ejections, subsets — reaches the balancer from that
// connection's own resolver, so connections never share state through the
// registry.
const BalancerName = "vitamin_balancer"

// init registers the balancer builder, which is stateless. It is the one
// registration at init time in Vitamin (the design otherwise forbids them):
// grpc-go's balancer.Register "must only be called during initialization
// time (i.e. in an init() function), and is not thread-safe" — it writes
// the map that every grpc.NewClient in the process reads when it parses a
// service config — so registering later, even once, would race with
// connections made elsewhere. grpc-go offers no per-connection balancer to
// give instead, as it does for resolvers.
func init() { balancer.Register(balancerBuilder{}) }

const serviceConfig = `{"loadBalancingConfig":[{"` + BalancerName + `":{}}]}`

// NewGRPC returns a gRPC client connection to service, built with
// grpc.NewClient:
//
//   - a resolver given to this connection only (grpc.WithResolvers) follows
//     the service's instances through the watcher of WithWatcher;
//   - Vitamin's balancer spreads calls over them as cfg.Balancing says, ejects
//     outliers and routes to subsets;
//   - the resilience policy of WithPolicies guards each call, and its
//     retries and hedges go to other instances than the attempts before;
//   - an RPC that never left the client (its instance's transport closed
//     or drained before the stream was written) is retried by grpc-go
//     itself, transparently, through the same picker and so to another
//     instance, inside one attempt of the policy (see the package
//     documentation, "Transparent retries");
//   - an OpenTelemetry stats handler traces each attempt (WithoutTracing
//     leaves it out);
//   - WithCaller's name travels in the connection's user agent
//     (resilience.CallerUserAgent), where resiliencegrpc.Caller finds it.
//
// A call while the service has no instance fails at once with status
// UNAVAILABLE and a message naming the service; calls succeed again as soon
// as instances return. ctx bounds only the construction; the connection
// lives until its Close, which also stops the watch. An invalid cfg field
// or option fails with a *FieldError.
func NewGRPC(ctx context.Context, service string, cfg Config, opts ...GRPCOption) (*grpc.ClientConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := buildGRPCOptions(service, cfg, opts)
	if err != nil {
		return nil, err
	}
	c := newCore(service, o.balancing, true, o.logger, o.meter)
	c.guardOpts.handler = o.guardHandler
	o.monitor.add(c)
	rb := &resolverBuilder{
		scheme: fmt.Sprintf("vitamin-%016x", rand.Uint64()),
		core:   c,
		o:      &o.options,
	}
	ci := &callInterceptor{core: c,
		state: o.policies != nil || o.routing != nil || o.balancing.Pin != nil || o.balancing.Sticky != nil}
	ci.invokeFn, ci.streamFn = ci.invoke, ci.newStream
	if o.policies != nil {
		pick := resiliencegrpc.ForService(o.policies, service)
		ci.unaryPolicy = resiliencegrpc.UnaryClientInterceptor(pick)
		ci.streamPolicy = resiliencegrpc.StreamClientInterceptor(pick)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(rb),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithChainUnaryInterceptor(ci.unary),
		grpc.WithChainStreamInterceptor(ci.stream),
	}
	if o.tracing {
		dial = append(dial, grpc.WithStatsHandler(tracinggrpc.ClientHandler(o.tracingOpts...)))
	}
	dial = append(dial, o.dialOpts...)
	if o.caller != "" {
		dial = append(dial, grpc.WithUserAgent(resilience.CallerUserAgent(o.caller)))
	}
	conn, err := grpc.NewClient(rb.scheme+":///"+service, dial...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %q: %w", service, err)
	}
	conn.Connect()
	return conn, nil
}

// callInterceptor is the connection's one interceptor (grpc-go chains
// several through a closure per call): it gives each logical call the
// state its attempts share (instances tried, routing keys), then runs it
// under the resilience policy.
type callInterceptor struct {
	core         *core
	state        bool // unary calls need a callState: retries or hedges may come, or routing keys
	unaryPolicy  grpc.UnaryClientInterceptor
	streamPolicy grpc.StreamClientInterceptor
	invokeFn     grpc.UnaryInvoker // ci.invoke, made once
	streamFn     grpc.Streamer     // ci.newStream, made once
}

func (ci *callInterceptor) prepare(ctx context.Context) (context.Context, *callState) {
	ctx, cs := withCall(ctx)
	if b := ci.core.bal.Load(); b.Pin != nil || b.Sticky != nil {
		md, _ := metadata.FromOutgoingContext(ctx)
		if p := b.Pin; p != nil {
			cs.pin = first(md.Get(p.Header))
			if cs.pin == "" && p.Baggage != "-" {
				cs.pin = baggage.FromContext(ctx).Member(p.Baggage).Value()
			}
		}
		if st := b.Sticky; st != nil {
			cs.sticky = first(md.Get(st.Header))
		}
	}
	return ctx, cs
}

func first(v []string) string {
	if len(v) > 0 {
		return v[0]
	}
	return ""
}

func (ci *callInterceptor) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !ci.state {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	ctx, cs := ci.prepare(ctx)
	if ci.unaryPolicy == nil {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	cs.invoker = invoker
	return resilience.StripOutcome(ci.unaryPolicy(ctx, method, req, reply, cc, ci.invokeFn, opts...))
}

// invoke runs one attempt of a call under a resilience policy and marks
// its error as the noInstances outcome when the picker found no instance.
func (ci *callInterceptor) invoke(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
	cs := callFrom(ctx)
	return cs.noInstancesError(cs.invoker(ctx, method, req, reply, cc, opts...))
}

// noInstancesError returns err with the noInstances outcome if the picker
// found no instance for the call.
func (cs *callState) noInstancesError(err error) error {
	if err != nil && cs.noInstances.Load() && status.Code(err) == codes.Unavailable {
		return resilience.WithOutcome(err, noInstances)
	}
	return err
}

func (ci *callInterceptor) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx, cs := ci.prepare(ctx)
	cs.stream = true
	if ci.streamPolicy == nil {
		return streamer(ctx, desc, cc, method, opts...)
	}
	cs.streamer = streamer
	s, err := ci.streamPolicy(ctx, desc, cc, method, ci.streamFn, opts...)
	return s, resilience.StripOutcome(err)
}

// newStream is invoke for streams.
func (ci *callInterceptor) newStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs := callFrom(ctx)
	s, err := cs.streamer(ctx, desc, cc, method, opts...)
	return s, cs.noInstancesError(err)
}

// resolverBuilder builds the resolver of one connection.
type resolverBuilder struct {
	scheme string
	core   *core
	o      *options
}

func (b *resolverBuilder) Scheme() string { return b.scheme }

// Build starts following the service. grpc-go calls it when the connection
// leaves idle mode, and Close when it enters idle mode or closes.
func (b *resolverBuilder) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &watchResolver{cancel: cancel, done: make(chan struct{}), stop: func() {}}
	if rt := b.o.routing; rt != nil {
		r.stop = rt.follow(b.core)
	}
	go func() {
		defer close(r.done)
		follow(ctx, b.core, b.o, func(instances []discovery.Instance) {
			eps := make([]resolver.Endpoint, len(instances))
			for i, in := range instances {
				eps[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: in.Endpoint()}}}
			}
			_ = cc.UpdateState(resolver.State{Endpoints: eps, Attributes: attributes.New(coreKey{}, b.core)})
		}, cc.ReportError)
	}()
	return r, nil
}

type coreKey struct{}

type watchResolver struct {
	cancel context.CancelFunc
	done   chan struct{}
	stop   func() // stops following the Routing
}

// ResolveNow does nothing: the watch pushes every change.
func (r *watchResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the watch and waits for its goroutine.
func (r *watchResolver) Close() {
	r.cancel()
	<-r.done
	r.stop()
}

// follow watches the service until ctx ends, feeding each snapshot into c
// and then to push. A watch that fails is started again with backoff.
func follow(ctx context.Context, c *core, o *options, push func([]discovery.Instance), report func(error)) {
	bo := backoff.Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second}
	failures := 0
	for ctx.Err() == nil {
		w, err := o.watcher.Watch(ctx, c.service, o.watchOpts...)
		if err == nil {
			err = watchLoop(ctx, w, c, o, push)
			_ = w.Close()
			failures = 0 // the watch worked: start the schedule over
		}
		if ctx.Err() != nil {
			return
		}
		c.unblock() // calls waiting for a first answer fail instead of hanging
		if o.logger != nil {
			o.logger.Warn("client: watch failed", "service", c.service, "error", err)
		}
		if report != nil {
			report(fmt.Errorf("client: watch %q: %w", c.service, err))
		}
		if errors.Is(err, discovery.ErrClosed) {
			return // the watcher was closed: nothing will come any more
		}
		failures++
		if !backoff.Sleep(ctx, bo.Delay(failures)) {
			return
		}
	}
}

func watchLoop(ctx context.Context, w discovery.Watch, c *core, o *options, push func([]discovery.Instance)) error {
	for {
		snap, err := w.Next(ctx)
		if err != nil {
			return err
		}
		c.noteWatch(snap)
		if snap.Stale && o.logger != nil {
			o.logger.Warn("client: discovery unreachable, serving last known instances", "service", c.service, "error", snap.Err)
		}
		c.update(snap.Instances)
		if push != nil {
			push(snap.Instances)
		}
	}
}

// balancerBuilder builds Vitamin balancers. It is stateless: each
// balancer gets its connection's core from the resolver state.
type balancerBuilder struct{}

func (balancerBuilder) Name() string { return BalancerName }

func (balancerBuilder) Build(cc balancer.ClientConn, _ balancer.BuildOptions) balancer.Balancer {
	return &grpcBalancer{cc: cc, conns: map[string]*subConn{}}
}

type subConn struct {
	addr   string
	sc     balancer.SubConn
	state  connectivity.State
	err    error
	failed bool // it was in TRANSIENT_FAILURE at least once
}

// grpcBalancer keeps one SubConn per instance and hands the core's picker
// to gRPC. grpc-go calls its methods and the SubConn state listeners one at
// a time, so it needs no lock.
type grpcBalancer struct {
	cc     balancer.ClientConn
	core   *core
	conns  map[string]*subConn
	resErr error
	state  connectivity.State
	closed bool
}

func (b *grpcBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	if s.ResolverState.Attributes != nil {
		if c, ok := s.ResolverState.Attributes.Value(coreKey{}).(*core); ok {
			b.core = c
		}
	}
	if b.core == nil {
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure,
			Picker: base.NewErrPicker(status.Error(codes.Unavailable, "client: the Vitamin balancer needs the Vitamin resolver (use client.NewGRPC)"))})
		return balancer.ErrBadResolverState
	}
	b.resErr = nil
	want := map[string]bool{}
	for _, ep := range s.ResolverState.Endpoints {
		if len(ep.Addresses) > 0 {
			want[ep.Addresses[0].Addr] = true
		}
	}
	for addr := range want {
		if _, ok := b.conns[addr]; ok {
			continue
		}
		s := &subConn{addr: addr, state: connectivity.Idle}
		sc, err := b.cc.NewSubConn([]resolver.Address{{Addr: addr}}, balancer.NewSubConnOptions{
			StateListener: func(st balancer.SubConnState) { b.onState(s, st) },
		})
		if err != nil {
			continue
		}
		s.sc = sc
		b.conns[addr] = s
		sc.Connect()
	}
	for addr, s := range b.conns {
		if !want[addr] {
			s.sc.Shutdown()
			delete(b.conns, addr)
			continue
		}
		// The resolver may have replaced the core's endpoint for addr
		// (removed and added again): tell it about the live SubConn.
		b.core.setConn(addr, s.sc, s.state == connectivity.Ready)
	}
	b.updatePicker()
	return nil
}

func (b *grpcBalancer) onState(s *subConn, st balancer.SubConnState) {
	if b.closed || b.conns[s.addr] != s || st.ConnectivityState == connectivity.Shutdown {
		return
	}
	s.state = st.ConnectivityState
	if st.ConnectivityState == connectivity.TransientFailure {
		s.err = st.ConnectionError
		s.failed = true
	}
	if st.ConnectivityState == connectivity.Idle {
		s.sc.Connect()
	}
	b.core.setConn(s.addr, s.sc, s.state == connectivity.Ready)
	b.updatePicker()
}

func (b *grpcBalancer) updatePicker() {
	var ready, connecting, fresh int
	var lastErr error
	for _, s := range b.conns {
		switch s.state {
		case connectivity.Ready:
			ready++
		case connectivity.Idle, connectivity.Connecting:
			connecting++
			if !s.failed {
				fresh++
			}
		case connectivity.TransientFailure:
			lastErr = s.err
		}
	}
	var st balancer.State
	switch {
	case ready > 0:
		st = balancer.State{ConnectivityState: connectivity.Ready, Picker: &picker{c: b.core, connecting: fresh > 0}}
	case len(b.conns) == 0:
		var err error = &NoInstancesError{Service: b.core.service, Reason: "no instances"}
		if b.resErr != nil {
			err = status.Errorf(codes.Unavailable, "client: no instances of service %q: %v", b.core.service, b.resErr)
		}
		st = balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: noInstancesPicker{err}}
	case connecting > 0:
		st = balancer.State{ConnectivityState: connectivity.Connecting, Picker: base.NewErrPicker(balancer.ErrNoSubConnAvailable)}
	default:
		msg := fmt.Sprintf("client: no reachable instance of service %q", b.core.service)
		if lastErr != nil {
			msg += ": " + lastErr.Error()
		}
		st = balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: noInstancesPicker{status.Error(codes.Unavailable, msg)}}
	}
	b.state = st.ConnectivityState
	b.cc.UpdateState(st)
}

func (b *grpcBalancer) ResolverError(err error) {
	b.resErr = err
	if b.core != nil && len(b.conns) == 0 {
		b.updatePicker()
	}
}

// UpdateSubConnState is not used: SubConns report through their listener.
func (b *grpcBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}

func (b *grpcBalancer) ExitIdle() {
	for _, s := range b.conns {
		if s.state == connectivity.Idle {
			s.sc.Connect()
		}
	}
}

func (b *grpcBalancer) Close() {
	b.closed = true
	for addr, s := range b.conns {
		s.sc.Shutdown()
		delete(b.conns, addr)
	}
	if b.core != nil {
		b.core.resetConns()
	}
}

// picker asks the core for an instance and reports each call's outcome.
type picker struct {
	c          *core
	connecting bool // some new instances are connecting for the first time
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	cs := callFrom(info.Ctx)
	m, again, err := p.c.pickAgain(cs)
	if err != nil {
		if cs != nil {
			cs.noInstances.Store(true)
		}
		return balancer.PickResult{}, err
	}
	if again && p.connecting {
		// A retry or hedge would go back to an instance the call already
		// tried while new ones are still connecting: wait for them (gRPC
		// picks again when the next picker arrives, at the latest when
		// their first connection attempt ends).
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
	if m.sc == nil {
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
	start := p.c.start(m.ep)
	c := p.c
	stream := cs != nil && cs.stream
	gen := c.watch(info.Ctx, cs, m.ep, start)
	return balancer.PickResult{SubConn: m.sc, Done: func(di balancer.DoneInfo) {
		cs.unwatch(gen)
		c.finish(m.ep, start, doneOutcome(di, stream))
	}}, nil
}

// noInstancesPicker fails every call with err while the service has no
// instance to call, and tells the call so (see callInterceptor.invoke).
type noInstancesPicker struct{ err error }

func (p noInstancesPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	if cs := callFrom(info.Ctx); cs != nil {
		cs.noInstances.Store(true)
	}
	return balancer.PickResult{}, p.err
}

// doneOutcome is how an attempt that grpc-go reports done counts for the
// balancer.
func doneOutcome(di balancer.DoneInfo, stream bool) outcome {
	o := grpcOutcome(di.Err)
	switch {
	case !di.BytesSent && o != outcomeFailure:
		// Nothing reached the instance: grpc-go picks again, with an
		// empty DoneInfo, when the picked SubConn's transport is not
		// ready, and an attempt can end before its stream is open.
		return outcomeIgnore
	case stream && o != outcomeFailure:
		// A stream's length says nothing about the instance's latency.
		return outcomeIgnore
	}
	return o
}

func grpcOutcome(err error) outcome {
	if err == nil {
		return outcomeSuccess
	}
	if errors.Is(err, context.Canceled) {
		return outcomeCanceled
	}
	s, ok := status.FromError(err)
	if !ok {
		return outcomeFailure
	}
	switch s.Code() {
	case codes.Unavailable:
		return outcomeFailure
	case codes.Canceled:
		return outcomeCanceled
	case codes.DeadlineExceeded:
		return outcomeSlow
	}
	return outcomeSuccess
}
