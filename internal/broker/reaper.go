package broker

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// kfake (as of v0.0.0-20260918054303, the newest on the module proxy)
// departs from Apache Kafka's classic consumer groups in two ways that stall
// a group with a crash-looping member:
//
//   - A member whose connection died while it waited in JoinGroup never
//     expires: kfake starts a member's session timer only when a response is
//     delivered, and that one cannot be. If the group then becomes stable the
//     member keeps its partitions (nothing processes them) until a later
//     rebalance drops it after the full rebalance timeout; every crash adds
//     one. Kafka expires it after its session timeout.
//   - A live member waiting in JoinGroup or SyncGroup keeps its session timer
//     running, so a rebalance that lasts longer than the session timeout (one
//     waiting for such dead members) drops it, and its JoinGroup is never
//     answered (the client waits for its request timeout). Kafka keeps a
//     member waiting in a rebalance alive.
//
// The reaper restores Kafka's rules from outside, through the protocol. It
// watches the group requests (JoinGroup, SyncGroup, Heartbeat, LeaveGroup)
// and, once a second, (1) heartbeats for every member waiting in a
// rebalance, and (2) removes with a LeaveGroup request every classic-group
// member that sent nothing for longer than its session timeout, counted, if
// its last request was a JoinGroup or SyncGroup, from when that request was
// answered (seen by a SyncGroup of a newer round), and bounded by its
// rebalance timeout plus its session timeout (memberSeen.isDead). A member
// the reaper never saw a request from (a static member's first join carries
// no member id; groups reloaded from DataDir) is timed from when it first
// appears in the group's description, with the largest timeouts seen in its
// group (or franz-go's defaults, 45s and 60s).
type reaper struct {
	cl     *kgo.Client
	adm    *kadm.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	members map[memberKey]*memberSeen
	groups  map[string]timeouts // largest timeouts seen per group
	gens    map[string]int32    // latest generation seen per group
	// leaderSynced is the latest generation whose leader SyncGroup (the
	// one with the assignment) was seen, per group.
	leaderSynced map[string]int32
	now          func() time.Time
}

type memberKey struct{ group, member string }

type timeouts struct{ session, rebalance time.Duration }

type memberSeen struct {
	last time.Time
	// awaiting is the group state in which the member's last request, a
	// JoinGroup ("PreparingRebalance") or SyncGroup
	// ("CompletingRebalance"), blocks; "" after a heartbeat.
	awaiting string
	// answered is when that request was answered, as far as the reaper
	// can tell (zero: not yet).
	answered time.Time
	// gen is the group generation current at that request (as seen in
	// other requests): the round that answers it has a newer one.
	gen int32
	timeouts
}

// isDead applies Kafka's rule to a member at now: silent for longer than
// its session timeout, counted, for a member whose last request was a
// JoinGroup or SyncGroup, from when that request was answered (Kafka keeps
// a member waiting in a rebalance alive and starts its session timer when
// the rebalance step completes). Bound: rebalance + session timeout from its
// last request.
func (m *memberSeen) isDead(now time.Time) bool {
	switch {
	case m.awaiting == "":
		return now.Sub(m.last) > m.session
	case now.Sub(m.last) > m.rebalance+m.session:
		return true
	case m.answered.IsZero():
		return false
	}
	return now.Sub(m.answered) > m.session
}

var defaultTimeouts = timeouts{session: 45 * time.Second, rebalance: 60 * time.Second}

// startReaper installs the request observers on c and starts the reaper.
func startReaper(c *kfake.Cluster, addr string) (*reaper, error) {
	// The reaper's own heartbeats are version 0 (clients send newer ones),
	// so that observe can tell them apart.
	versions := kversion.Stable()
	versions.SetMaxKeyVersion(kmsg.Heartbeat.Int16(), 0)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ClientID("featurepipe-broker-reaper"), kgo.MaxVersions(versions))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &reaper{cl: cl, adm: kadm.NewClient(cl), cancel: cancel, done: make(chan struct{}),
		members: map[memberKey]*memberSeen{}, groups: map[string]timeouts{}, gens: map[string]int32{}, leaderSynced: map[string]int32{}, now: time.Now}
	observe := func(req kmsg.Request) (kmsg.Response, error, bool) {
		r.observe(req)
		return nil, nil, false // observe only: kfake handles the request
	}
	for _, key := range []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.LeaveGroup} {
		c.ControlKey(key.Int16(), observe)
	}
	go r.run(ctx)
	return r, nil
}

func (r *reaper) close() {
	r.cancel()
	<-r.done
	r.cl.Close()
}

func (r *reaper) observe(req kmsg.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	switch req := req.(type) {
	case *kmsg.JoinGroupRequest:
		t := timeouts{session: time.Duration(req.SessionTimeoutMillis) * time.Millisecond,
			rebalance: time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond}
		if t.rebalance <= 0 { // JoinGroup v0 has no rebalance timeout
			t.rebalance = t.session
		}
		g := r.groups[req.Group]
		r.groups[req.Group] = timeouts{max(g.session, t.session), max(g.rebalance, t.rebalance)}
		if req.MemberID != "" {
			r.members[memberKey{req.Group, req.MemberID}] = &memberSeen{last: now, awaiting: "PreparingRebalance", gen: r.gens[req.Group], timeouts: t}
		}
	case *kmsg.SyncGroupRequest:
		r.gens[req.Group] = max(r.gens[req.Group], req.Generation)
		// A SyncGroup means the join round before it completed: every
		// JoinGroup still waiting was answered. The leader's (the one
		// with the assignment) completes the sync round: every
		// SyncGroup waiting is answered.
		// Only a SyncGroup of a newer generation than the one current
		// at a member's request answers it (a late one of an older round
		// does not).
		for k, m := range r.members {
			if k.group == req.Group && m.answered.IsZero() && req.Generation > m.gen && (m.awaiting == "PreparingRebalance" ||
				m.awaiting == "CompletingRebalance" && len(req.GroupAssignment) > 0) {
				m.answered = now
			}
		}
		if len(req.GroupAssignment) > 0 {
			r.leaderSynced[req.Group] = max(r.leaderSynced[req.Group], req.Generation)
		}
		r.touch(req.Group, req.MemberID, now, "CompletingRebalance")
		m := r.members[memberKey{req.Group, req.MemberID}]
		m.gen = req.Generation - 1
		if r.leaderSynced[req.Group] >= req.Generation {
			m.answered = now // the leader synced first: kfake answers at once
		}
	case *kmsg.HeartbeatRequest:
		if req.Version == 0 {
			return // the reaper's keep-alive (see reap)
		}
		r.gens[req.Group] = max(r.gens[req.Group], req.Generation)
		r.touch(req.Group, req.MemberID, now, "")
	case *kmsg.LeaveGroupRequest:
		delete(r.members, memberKey{req.Group, req.MemberID})
		for _, m := range req.Members {
			delete(r.members, memberKey{req.Group, m.MemberID})
		}
	}
}

// touch records a request from a member. mu held.
func (r *reaper) touch(group, member string, now time.Time, awaiting string) {
	m := r.members[memberKey{group, member}]
	if m == nil {
		m = &memberSeen{timeouts: r.groupTimeouts(group)}
		r.members[memberKey{group, member}] = m
	}
	m.last, m.awaiting, m.answered = now, awaiting, time.Time{}
}

// groupTimeouts are the largest timeouts seen in group. mu held.
func (r *reaper) groupTimeouts(group string) timeouts {
	if t, ok := r.groups[group]; ok {
		return t
	}
	return defaultTimeouts
}

func (r *reaper) run(ctx context.Context) {
	defer close(r.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.reap(ctx)
	}
}

// reap removes the dead members of every classic consumer group. Errors
// are ignored: the next tick tries again.
func (r *reaper) reap(ctx context.Context) {
	listed, err := r.adm.ListGroups(ctx)
	if err != nil {
		return
	}
	described, err := r.adm.DescribeGroups(ctx, listed.Groups()...)
	if err != nil {
		return
	}
	for _, g := range described {
		if g.Err != nil || g.ProtocolType != "consumer" {
			continue
		}
		dead, waiting, gen := r.dead(g)
		for _, id := range waiting {
			hb := kmsg.NewPtrHeartbeatRequest()
			hb.Group, hb.MemberID, hb.Generation = g.Group, id, gen
			_, _ = hb.RequestWith(ctx, r.cl)
		}
		if len(dead) > 0 {
			req := kmsg.NewPtrLeaveGroupRequest()
			req.Group = g.Group
			for _, id := range dead {
				m := kmsg.NewLeaveGroupRequestMember()
				m.MemberID = id
				reason := "featurepipe broker: no request from this member within its session timeout"
				m.Reason = &reason
				req.Members = append(req.Members, m)
			}
			_, _ = req.RequestWith(ctx, r.cl)
		}
	}
}

// dead returns the members of g silent for longer than their deadline and
// those waiting in a JoinGroup or SyncGroup not yet answered, with g's
// latest generation, and forgets members no longer in g. kfake lets the
// session timer of a member run while it waits in JoinGroup or SyncGroup
// (Apache Kafka keeps such a member alive), so a rebalance longer than the
// session timeout would drop every live member waiting in it, whose
// JoinGroup then never gets an answer; the reaper heartbeats for them.
func (r *reaper) dead(g kadm.DescribedGroup) (dead, waiting []string, gen int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	present := map[string]bool{}
	for _, dm := range g.Members {
		present[dm.MemberID] = true
		m := r.members[memberKey{g.Group, dm.MemberID}]
		if m == nil {
			m = &memberSeen{last: now, awaiting: "PreparingRebalance", timeouts: r.groupTimeouts(g.Group)}
			r.members[memberKey{g.Group, dm.MemberID}] = m
		}
		if m.awaiting != "" && m.answered.IsZero() && g.State != m.awaiting {
			m.answered = now
		}
		switch {
		case m.isDead(now):
			dead = append(dead, dm.MemberID)
		case m.awaiting != "" && m.answered.IsZero():
			waiting = append(waiting, dm.MemberID)
		}
	}
	for k := range r.members {
		if k.group == g.Group && !present[k.member] {
			delete(r.members, k)
		}
	}
	return dead, waiting, r.gens[g.Group]
}
