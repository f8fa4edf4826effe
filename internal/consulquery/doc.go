// Package consulquery is the one Consul blocking-query loop of Vitamin,
// shared by the discovery watcher (the health of a service) and the
// configuration source (the keys under a KV prefix).
//
// # The loop
//
// A [Loop] runs one query after another, each from the index of the last
// answer, so that Consul holds it until something changes or WaitTime
// passes. It
//
//   - starts over from index 0 when the index goes backwards (a restored
//     or restarted server) and after an error, since whatever answers
//     next may have lost its state; an index lower than the last answer's,
//     failures in between or not, is reported as a reset
//     ([Round.Reset]);
//   - never blocks on index 0: an answer with index 0 is followed from 1;
//   - reads with AllowStale when asked to, so that any server can answer
//     while the cluster has no leader;
//   - backs off with [github.com/vitamin-go/vitamin/internal/backoff]
//     between failures in a row;
//   - logs the first failure of a run once (the caller serves its last good
//     answer as stale meanwhile), the recovery, and each index reset.
//
// # The caller
//
// The caller loops on [Loop.Next], which returns one [Round] per query:
// the answer, or the failure, how many failures in a row there were,
// whether this answer ends them, and whether its index moved. What to do
// with it stays with the caller: the watcher applies self-preservation,
// can ask for a fresh read ([Loop.Reread]) or bound the next wait to a
// deadline of its own ([Loop.WaitAtMost]), and after a reset or a recovery
// doubts answers that lack instances; the KV source emits a layer only
// when it may have changed.
package consulquery
