//go:build race

package lookup

// raceEnabled: the race detector makes sync.Pool drop objects at random and
// adds allocations of its own, so allocation counts are not checked.
const raceEnabled = true
