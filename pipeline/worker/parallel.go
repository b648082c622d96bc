package worker

import (
	"runtime"
	"sync"
)

// inChunks calls f once per chunk of [0, n), on up to GOMAXPROCS
// contiguous chunks of at least minChunk items each, at once (one chunk,
// on the calling goroutine, when n < 2 × minChunk), and waits for them. g
// numbers the chunks from 0; it returns how many there were. f must be
// safe to run concurrently on disjoint ranges.
//
// Cost: a goroutine per chunk beyond the first (~1 µs each).
func inChunks(n, minChunk int, f func(g, lo, hi int)) int {
	k := min(runtime.GOMAXPROCS(0), n/max(minChunk, 1))
	if k <= 1 {
		if n > 0 {
			f(0, 0, n)
			return 1
		}
		return 0
	}
	var wg sync.WaitGroup
	for g := 1; g < k; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(g, g*n/k, (g+1)*n/k)
		}()
	}
	f(0, 0, n/k)
	wg.Wait()
	return k
}
