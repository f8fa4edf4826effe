package messaging

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// KVStoreConfig holds a KVStore's settings. The zero value is valid. It
// is plain data, safe to copy.
type KVStoreConfig struct {
	// Bucket is the JetStream key-value bucket, created or updated by
	// NewKVStore. Default "vitamin_processed".
	Bucket string `yaml:"bucket,omitempty" json:"bucket,omitempty"`
	// Retention is how long a processed key is remembered (the bucket's
	// TTL). Keep it longer than a message can be redelivered. Default 24h.
	Retention time.Duration `yaml:"retention,omitempty" json:"retention,omitempty"`
	// Memory keeps the bucket in memory instead of on disk (the default).
	Memory bool `yaml:"memory,omitempty" json:"memory,omitempty"`
	// Replicas is the number of copies in a cluster. Default 1.
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty"`
}

// KVStore is a Store in a JetStream key-value bucket, shared by every
// consumer instance and surviving restarts. The first delivery to create a
// key wins (KeyValue.Create); a claim carries its own per-key TTL so that
// the key of a crashed instance frees itself, and its lease deadline so
// that another instance can take it over once expired. It is safe for
// concurrent use.
//
// A KVStore gives at-least-once effects that never repeat once the key is
// marked done: if an instance dies after its handler's side effect but
// before marking the key done, the message runs again after the lease.
// For exactly-once effects use SQLStore.
type KVStore struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	bucket string
}

var _ Store = (*KVStore)(nil)

// NewKVStore creates or updates the bucket and returns a KVStore over it.
// The server must support per-key TTLs (nats-server 2.11 or later).
func NewKVStore(ctx context.Context, js jetstream.JetStream, cfg KVStoreConfig) (*KVStore, error) {
	if js == nil {
		return nil, invalid("js", nil, "is nil")
	}
	if err := cmp.Or(notNegative("KVStoreConfig.Retention", cfg.Retention), notNegative("KVStoreConfig.Replicas", cfg.Replicas)); err != nil {
		return nil, err
	}
	if cfg.Replicas > maxReplicas {
		return nil, invalid("KVStoreConfig.Replicas", cfg.Replicas, "must be at most 5 (JetStream's limit)")
	}
	if cfg.Bucket == "" {
		cfg.Bucket = "vitamin_processed"
	}
	if cfg.Retention == 0 {
		cfg.Retention = 24 * time.Hour
	}
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	kvConfig := jetstream.KeyValueConfig{
		Bucket:         cfg.Bucket,
		Description:    "Vitamin idempotency keys",
		History:        1,
		TTL:            cfg.Retention,
		Storage:        storage,
		Replicas:       max(cfg.Replicas, 1),
		LimitMarkerTTL: time.Minute, // enables per-key TTLs
	}
	var kv jetstream.KeyValue
	err := jsAPI(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, kvConfig)
		return err
	})
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			if rerr := replicasError("KVStoreConfig.Replicas", max(cfg.Replicas, 1), apiErr); rerr != nil {
				return nil, rerr
			}
		}
		return nil, fmt.Errorf("messaging: key-value bucket %s: %w", cfg.Bucket, err)
	}
	return &KVStore{js: js, kv: kv, bucket: cfg.Bucket}, nil
}

// Processed reports whether key has been marked done.
func (s *KVStore) Processed(ctx context.Context, key string) (bool, error) {
	e, err := s.kv.Get(ctx, kvKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	done, _ := parseKV(e.Value())
	return done, nil
}

// kvKey maps any idempotency key onto the bucket's key alphabet.
func kvKey(key string) string { return "k" + base64.RawURLEncoding.EncodeToString([]byte(key)) }

const kvDone = "done"

func pendingValue(until time.Time) []byte {
	return []byte("lease " + strconv.FormatInt(until.UnixNano(), 10))
}

func parseKV(v []byte) (done bool, until time.Time) {
	s := string(v)
	if s == kvDone {
		return true, time.Time{}
	}
	if n, err := strconv.ParseInt(strings.TrimPrefix(s, "lease "), 10, 64); err == nil {
		return false, time.Unix(0, n)
	}
	return false, time.Time{} // unreadable: treat as an expired lease
}

// keyTTL is the per-key TTL of a claim: the lease plus slack, in whole
// seconds (the server's granularity). It only collects abandoned keys; the
// lease deadline in the value decides.
func keyTTL(lease time.Duration) time.Duration {
	return (lease + 2*time.Second).Truncate(time.Second)
}

// Claim implements Store.
func (s *KVStore) Claim(ctx context.Context, key string, lease time.Duration) (Claim, error) {
	k := kvKey(key)
	for range 3 {
		until := time.Now().Add(lease)
		rev, err := s.kv.Create(ctx, k, pendingValue(until), jetstream.KeyTTL(keyTTL(lease)))
		if err == nil {
			return &kvClaim{s: s, key: k, orig: key, rev: rev, until: until}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // released or expired meanwhile: create again
		}
		if err != nil {
			return nil, err
		}
		done, held := parseKV(e.Value())
		if done {
			return nil, ErrDuplicate
		}
		if time.Now().Before(held) {
			return nil, &ClaimedError{Key: key, Until: held}
		}
		// The lease expired (its holder died): take the key over.
		rev, err = s.put(ctx, k, pendingValue(until), e.Revision(), keyTTL(lease))
		if err != nil {
			if isWrongSeq(err) {
				return nil, &ClaimedError{Key: key}
			}
			return nil, err
		}
		return &kvClaim{s: s, key: k, orig: key, rev: rev, until: until}, nil
	}
	return nil, &ClaimedError{Key: key}
}

// put writes value if the key's last revision is rev, with a per-key TTL
// when ttl > 0.
func (s *KVStore) put(ctx context.Context, k string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(rev)}
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	ack, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: "$KV." + s.bucket + "." + k, Data: value}, opts...)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func isWrongSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == 10164)
}

type kvClaim struct {
	s         *KVStore
	key, orig string

	mu    sync.Mutex
	rev   uint64
	until time.Time     // the lease's end, as last written
	ended bool          // marked done or released: extended no more
	ext   chan struct{} // closed once the extension in flight is answered; nil if none
}

// settledLocked waits, with c.mu held, until no extension is in flight,
// so that c.rev is the key's revision. It returns with c.mu held.
func (c *kvClaim) settledLocked(ctx context.Context) error {
	for c.ext != nil {
		ch := c.ext
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			c.mu.Lock()
			return ctx.Err()
		}
		c.mu.Lock()
	}
	return nil
}

func (c *kvClaim) Extend(ctx context.Context, lease time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.settledLocked(ctx); err != nil || c.ended {
		return err
	}
	return c.extendLocked(ctx, lease)
}

func (c *kvClaim) extendLocked(ctx context.Context, lease time.Duration) error {
	until := time.Now().Add(lease)
	rev, err := c.s.put(ctx, c.key, pendingValue(until), c.rev, keyTTL(lease))
	if err != nil {
		if isWrongSeq(err) {
			return &ClaimedError{Key: c.orig}
		}
		return err
	}
	c.rev, c.until = rev, until
	return nil
}

// keep makes sure, before the handler of a batched message starts, that
// its lease has at least half of lease left, extending it if not: a claim
// that waited in its batch must not lapse under the handler.
func (c *kvClaim) keep(ctx context.Context, lease time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.settledLocked(ctx); err != nil {
		return err
	}
	if time.Until(c.until) >= lease/2 {
		return nil
	}
	return c.extendLocked(ctx, lease)
}

// asyncExtender is a Claim that can send its extension without waiting:
// extendAsync returns the function that waits for it, or nil if there is
// nothing to wait for.
type asyncExtender interface {
	extendAsync(lease time.Duration) func(context.Context) error
}

// extendAsync sends the extension; its wait function records the new
// revision. Meanwhile the mark of a handler that succeeded goes out at
// once (it expects no revision), and Release, Extend and keep wait for the
// answer, since they need the revision.
func (c *kvClaim) extendAsync(lease time.Duration) func(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.ext != nil {
		return nil
	}
	until := time.Now().Add(lease)
	fut, err := c.s.js.PublishMsgAsync(&nats.Msg{Subject: "$KV." + c.s.bucket + "." + c.key, Data: pendingValue(until)},
		jetstream.WithExpectLastSequencePerSubject(c.rev), jetstream.WithMsgTTL(keyTTL(lease)))
	if err != nil {
		return func(context.Context) error { return err }
	}
	ch := make(chan struct{})
	c.ext = ch
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, kvBatchTimeout)
		defer cancel()
		var rev uint64
		err := (&kvBatch{s: c.s}).wait(ctx, fut, func(ack *jetstream.PubAck) { rev = ack.Sequence })
		c.mu.Lock()
		if err == nil {
			c.rev, c.until = rev, until
		}
		c.ext = nil
		close(ch)
		c.mu.Unlock()
		if isWrongSeq(err) {
			return &ClaimedError{Key: c.orig}
		}
		return err
	}
}

// end stops the claim's extensions.
func (c *kvClaim) end() {
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
}

// Done marks the key done whoever holds it now: the work is done (a
// delivery that took the key over after our lease lapsed finds it done).
// No per-key TTL: the bucket's Retention applies.
func (c *kvClaim) Done(ctx context.Context) error {
	c.end()
	return c.s.markDone(ctx, c.key)
}

// markTimeout bounds how long markDone retries: longer than a KV bucket's
// leader election.
const markTimeout = 30 * time.Second

// markAttemptTimeout bounds one attempt of markDone.
const markAttemptTimeout = 2 * time.Second

// markDone records k done, whoever holds it, retrying transient failures
// for up to markTimeout. The handler's work is done: a mark given up
// would let a redelivery of the message do it again once the lease lapses.
func (s *KVStore) markDone(ctx context.Context, k string) error {
	ctx, cancel := context.WithTimeout(ctx, markTimeout)
	defer cancel()
	return retryAttempts(ctx, markAttemptTimeout, transient, func(ctx context.Context) error {
		_, err := s.kv.Put(ctx, k, []byte(kvDone))
		return err
	})
}

func (c *kvClaim) Release(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	if err := c.settledLocked(ctx); err != nil {
		return err
	}
	err := c.s.kv.Delete(ctx, c.key, jetstream.LastRevision(c.rev))
	if isWrongSeq(err) {
		return nil // no longer ours
	}
	return err
}

var _ batchStore = (*KVStore)(nil)

func (s *KVStore) begin(context.Context) (storeBatch, error) { return &kvBatch{s: s}, nil }

// kvBatch sends the claims of a batch together, and each mark as soon as
// its handler succeeded, and waits for their acknowledgements once.
type kvBatch struct {
	s     *KVStore
	marks []kvMark
}

// kvMark is a mark sent and not yet acknowledged.
type kvMark struct {
	c   *kvClaim
	fut jetstream.PubAckFuture
	err error // of sending it
}

func (b *kvBatch) subject(k string) string { return "$KV." + b.s.bucket + "." + k }

func (b *kvBatch) claim(ctx context.Context, msgs []*Message, lease time.Duration) []error {
	ctx, cancel := context.WithTimeout(ctx, kvBatchTimeout)
	defer cancel()
	errs := make([]error, len(msgs))
	futs := make([]jetstream.PubAckFuture, len(msgs))
	until := time.Now().Add(lease)
	for i, m := range msgs {
		// Created only if the key has no entry; the slow path below
		// handles every other case, as Claim does.
		futs[i], errs[i] = b.s.js.PublishMsgAsync(&nats.Msg{Subject: b.subject(kvKey(m.Key)), Data: pendingValue(until)},
			jetstream.WithExpectLastSequencePerSubject(0), jetstream.WithMsgTTL(keyTTL(lease)))
	}
	var slow sync.WaitGroup
	for i, m := range msgs {
		if errs[i] == nil {
			errs[i] = b.wait(ctx, futs[i], func(ack *jetstream.PubAck) {
				m.claim = &kvClaim{s: b.s, key: kvKey(m.Key), orig: m.Key, rev: ack.Sequence, until: until}
			})
		}
		if errs[i] != nil { // the slow path, for each such key at once
			slow.Go(func() { m.claim, errs[i] = b.s.Claim(ctx, m.Key, lease) })
		}
	}
	slow.Wait()
	return errs
}

// wait waits for one acknowledgement and calls ok with it.
func (b *kvBatch) wait(ctx context.Context, fut jetstream.PubAckFuture, ok func(*jetstream.PubAck)) error {
	select {
	case ack := <-fut.Ok():
		ok(ack)
		return nil
	case err := <-fut.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *kvBatch) failed(ctx context.Context, m *Message) error { return m.claim.Release(ctx) }

func (b *kvBatch) pipelined() bool { return true }

// kvBatchTimeout bounds the wait for a batch's acknowledgements.
const kvBatchTimeout = 5 * time.Second

// succeeded sends m's mark at once, without waiting for it or for an
// extension in flight: the window in which its lease could lapse after the
// handler is one round trip. The mark expects no revision: whoever holds
// the key now, the work is done (as in Done).
func (b *kvBatch) succeeded(_ context.Context, m *Message) error {
	c := m.claim.(*kvClaim)
	c.end()
	mk := kvMark{c: c}
	mk.fut, mk.err = b.s.js.PublishMsgAsync(&nats.Msg{Subject: b.subject(c.key), Data: []byte(kvDone)})
	b.marks = append(b.marks, mk)
	return nil
}

func (b *kvBatch) commit(ctx context.Context, _ []*Message) (bool, error) {
	wctx, cancel := context.WithTimeout(ctx, kvBatchTimeout)
	defer cancel()
	var first error
	for _, mk := range b.marks {
		err := mk.err
		if err == nil {
			err = b.wait(wctx, mk.fut, func(*jetstream.PubAck) {})
		}
		if err != nil { // not sent, or lost: write it again until stored
			err = b.s.markDone(ctx, mk.c.key)
		}
		first = cmp.Or(first, err)
	}
	return false, first
}
