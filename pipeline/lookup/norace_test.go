//go:build !race

package lookup

// raceEnabled: see race_test.go.
const raceEnabled = false
