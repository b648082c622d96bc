// Package broker runs the embedded Kafka-protocol broker (franz-go's kfake)
// used by `featurepipe kafka`, `featurepipe dev` and the fast tests. It
// speaks the real Kafka protocol, so clients cannot tell it from Apache Kafka
// for everything featurepipe uses: produce, fetch, consumer groups,
// list-offsets by timestamp, compaction. Where kfake's consumer groups
// depart from Apache Kafka's (members dead mid-rebalance never expire, live
// members waiting in a rebalance do), a reaper restores Kafka's rule
// (reaper.go).
package broker

import (
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Options configure Start. The zero value starts an in-memory broker on a
// random loopback port.
type Options struct {
	// Listen is the host:port to listen on. Default "127.0.0.1:0" (random port).
	Listen string
	// DataDir makes the broker persist its logs and group state there and
	// reload them on the next start. Default "": memory only.
	DataDir string
	// Partitions is the partition count of auto-created topics. Default 6.
	Partitions int
}

// Broker is a running embedded broker.
type Broker struct {
	c    *kfake.Cluster
	addr string
	r    *reaper
}

// Start starts a single-broker cluster. Topics are created on first use.
func Start(o Options) (*Broker, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Partitions <= 0 {
		o.Partitions = 6
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return nil, fmt.Errorf("broker listen address %q: want host:port: %w", o.Listen, err)
	}
	listen := o.Listen
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(o.Partitions),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, listen) }),
		kfake.BrokerConfigs(map[string]string{"group.initial.rebalance.delay.ms": "0"}),
	}
	if o.DataDir != "" {
		opts = append(opts, kfake.DataDir(o.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", o.Listen, err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return nil, fmt.Errorf("start embedded broker on %s: no listener", o.Listen)
	}
	r, err := startReaper(c, addrs[0])
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("start embedded broker on %s: %w", o.Listen, err)
	}
	return &Broker{c: c, addr: addrs[0], r: r}, nil
}

// Addr is the host:port clients connect to.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker, flushing persisted state when DataDir is set.
func (b *Broker) Close() {
	b.r.close()
	b.c.Close()
}
