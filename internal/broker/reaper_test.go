package broker

import (
	"testing"
	"time"
)

func TestMemberIsDead(t *testing.T) {
	t0 := time.Unix(1000, 0)
	to := timeouts{session: 6 * time.Second, rebalance: 10 * time.Second}
	tests := []struct {
		name string
		m    memberSeen
		now  time.Time
		want bool
	}{
		{"heartbeating member within its session timeout", memberSeen{last: t0, timeouts: to}, t0.Add(5 * time.Second), false},
		{"member silent past its session timeout", memberSeen{last: t0, timeouts: to}, t0.Add(7 * time.Second), true},
		{"member waiting in a rebalance not yet over is kept alive", memberSeen{last: t0, awaiting: "PreparingRebalance", timeouts: to}, t0.Add(9 * time.Second), false},
		{"answered join: session timeout counts from the answer", memberSeen{last: t0, awaiting: "PreparingRebalance", answered: t0.Add(4 * time.Second), timeouts: to}, t0.Add(9 * time.Second), false},
		{"answered join, then silent past the session timeout", memberSeen{last: t0, awaiting: "PreparingRebalance", answered: t0.Add(4 * time.Second), timeouts: to}, t0.Add(11 * time.Second), true},
		{"waiting longer than rebalance + session timeout", memberSeen{last: t0, awaiting: "CompletingRebalance", timeouts: to}, t0.Add(17 * time.Second), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.isDead(tc.now); got != tc.want {
				t.Fatalf("isDead = %v, want %v", got, tc.want)
			}
		})
	}
}
