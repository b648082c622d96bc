package produce

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
)

// Demo generates plausible transactions and logins for the demo feature
// file (schemas/demo.yaml) until ctx ends: Users users (u0001...), Rate
// events per second, with event times spread over the last History so the
// 30-day features have data from the first second.
type Demo struct {
	Users   int
	Rate    int
	History time.Duration
}

// Run backfills History worth of events quickly, then streams at Rate.
// onSent is called with the running total after each batch.
func (d Demo) Run(ctx context.Context, cl *kgo.Client, cfg *config.File, onSent func(total int)) error {
	tx, err := NewEncoder(cfg, "transactions")
	if err != nil {
		return err
	}
	lg, err := NewEncoder(cfg, "logins")
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	countries := []string{"DE", "FR", "US", "BR", "IN", "JP"}
	currencies := []string{"EUR", "USD", "BRL"}
	event := func(ts int64) (*kgo.Record, error) {
		user := fmt.Sprintf("u%04d", 1+rng.IntN(d.Users))
		if rng.IntN(4) == 0 {
			return lg.Record(map[string]any{"user_id": user, "country": countries[rng.IntN(len(countries))],
				"success": rng.IntN(10) != 0, "ts": ts})
		}
		return tx.Record(map[string]any{"user_id": user, "merchant_id": fmt.Sprintf("m%03d", rng.IntN(200)),
			"amount": float64(int(rng.ExpFloat64()*4000)) / 100, "currency": currencies[rng.IntN(len(currencies))], "ts": ts})
	}
	// stopped ends Run without error when ctx ended during a send: Run
	// stops on cancel whichever phase it is in.
	stopped := func(err error) error {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	total := 0
	send := func(recs []*kgo.Record) error {
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return err
		}
		total += len(recs)
		if onSent != nil {
			onSent(total)
		}
		return nil
	}
	// History: one event per user per ~6h on average, in random order.
	now := time.Now()
	n := int(d.History/(6*time.Hour)) * d.Users
	batch := make([]*kgo.Record, 0, 1000)
	for i := 0; i < n; i++ {
		ts := now.Add(-time.Duration(rng.Int64N(int64(d.History)))).UnixMilli()
		r, err := event(ts)
		if err != nil {
			return err
		}
		batch = append(batch, r)
		if len(batch) == cap(batch) {
			if err := send(batch); err != nil {
				return stopped(err)
			}
			batch = batch[:0]
		}
	}
	if err := send(batch); err != nil {
		return stopped(err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		batch = batch[:0]
		for i := 0; i < max(1, d.Rate/10); i++ {
			// Mostly now, some a little late.
			ts := time.Now().Add(-time.Duration(rng.Int64N(int64(2 * time.Minute)))).UnixMilli()
			r, err := event(ts)
			if err != nil {
				return err
			}
			batch = append(batch, r)
		}
		if err := send(batch); err != nil {
			return stopped(err)
		}
	}
}
