package worker

import "sync"

// inChunks calls f once per chunk of [0, n), on up to maxChunks
// contiguous chunks of at least minChunk items each, at once (one chunk,
// on the calling goroutine, when n < 2 × minChunk or maxChunks ≤ 1), and
// waits for them. g numbers the chunks from 0 (below maxChunks, so it can
// index per-chunk state sized maxChunks); it returns how many there were.
// f must be safe to run concurrently on disjoint ranges. Callers pass
// runtime.GOMAXPROCS(0) or less as maxChunks.
//
// Cost: a goroutine per chunk beyond the first (~1 µs each).
func inChunks(n, minChunk, maxChunks int, f func(g, lo, hi int)) int {
	k := min(maxChunks, n/max(minChunk, 1))
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
