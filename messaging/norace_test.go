//go:build !race

package messaging

// raceEnabled says that the race detector is on: long tests run smaller.
const raceEnabled = false
