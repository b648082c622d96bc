// Package kafka sets up franz-go clients the way every featurepipe component
// needs them, and creates the topics a feature file names.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
)

// ParseBrokers splits a comma-separated broker list, trimming spaces and
// skipping empty entries ("a:1,,b:2," is two brokers). It fails only when
// no broker is left.
func ParseBrokers(s string) ([]string, error) {
	var out []string
	for _, b := range strings.Split(s, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, errors.New("no brokers given: pass --brokers host:port[,host:port...]")
	}
	return out, nil
}

// BaseOpts are the options every featurepipe client starts from: c's seed
// brokers and security (TLS, SASL; see Conn), the client id, a 30s retry
// timeout and a zap-backed kgo logger at warn level (none if log is nil).
// It fails only when kafka.security names a secret or certificate that
// cannot be read; the message names the feature file's field.
func BaseOpts(c Conn, clientID string, log *zap.Logger) ([]kgo.Opt, error) {
	sec, err := securityOpts(c.Security)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(clientID),
		kgo.RetryTimeout(30 * time.Second),
	}
	opts = append(opts, sec...)
	if log != nil {
		opts = append(opts, kgo.WithLogger(zapLogger{log.Named("kgo")}))
	}
	return opts, nil
}

// EnsureTopics creates the topics cfg names if they do not exist: source
// topics and the dead-letter and lookup-log topics with cfg.Kafka.Partitions,
// the feature log and the registry compacted, and every repartition topic
// (config.File.Repartitions) with delete cleanup and its source topic's
// partition count (as the source topic exists now). Existing topics are
// left as they are. This and package config are the one home of
// featurepipe's topics: names, keys and cleanup policies.
func EnsureTopics(ctx context.Context, cl *kgo.Client, cfg *config.File) error {
	adm := kadm.NewClient(cl)
	p, rf := cfg.Kafka.Partitions, cfg.Kafka.ReplicationFactor
	create := func(configs map[string]*string, topics ...string) error {
		return createTopics(ctx, adm, p, rf, configs, topics...)
	}
	compact := "compact"
	if err := create(map[string]*string{"cleanup.policy": &compact}, cfg.Kafka.FeatureLogTopic, cfg.Kafka.RegistryTopic); err != nil {
		return err
	}
	topics := append(cfg.Topics(), cfg.Kafka.DeadLetterTopic, cfg.Kafka.LookupLogTopic)
	if err := create(nil, topics...); err != nil {
		return err
	}
	reps := cfg.Repartitions()
	if len(reps) == 0 {
		return nil
	}
	del := "delete"
	for _, r := range reps {
		// Just created, the source topic may not be in every broker's
		// metadata yet: retried for up to 30 seconds.
		var n int32
		deadline := time.Now().Add(30 * time.Second)
		for {
			td, err := adm.ListTopics(ctx, r.Source.Topic)
			if err == nil {
				err = td.Error()
			}
			if err == nil {
				if n = int32(len(td[r.Source.Topic].Partitions)); n == 0 {
					err = errNoPartitions
				}
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("partitions of source topic %s (to create %s with as many): %w", r.Source.Topic, r.Topic, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		if err := createTopics(ctx, adm, n, rf, map[string]*string{"cleanup.policy": &del}, r.Topic); err != nil {
			return err
		}
	}
	return nil
}

// createTopics creates topics, an existing one being no error.
func createTopics(ctx context.Context, adm *kadm.Client, p int32, rf int16, configs map[string]*string, topics ...string) error {
	resps, err := adm.CreateTopics(ctx, p, rf, configs, topics...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	for _, r := range resps.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// EndOffsets returns the current end (high watermark) offset of every
// partition of topic. A topic created moments ago may not be known to every
// broker yet: such errors are retried for up to 30 seconds.
func EndOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := endOffsets(ctx, cl, topic)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil ||
			!(errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.LeaderNotAvailable) || errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, errNoPartitions)) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var errNoPartitions = errors.New("topic has no partitions (does it exist?)")

func endOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	adm := kadm.NewClient(cl)
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if err := listed.Error(); err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	out := make(map[int32]int64)
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s: %w", topic, errNoPartitions)
	}
	return out, nil
}

type zapLogger struct{ l *zap.Logger }

func (z zapLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (z zapLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	fields := make([]zap.Field, 0, len(keyvals)/2)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fields = append(fields, zap.Any(fmt.Sprint(keyvals[i]), keyvals[i+1]))
	}
	switch level {
	case kgo.LogLevelError:
		z.l.Error(msg, fields...)
	case kgo.LogLevelWarn:
		z.l.Warn(msg, fields...)
	default:
		z.l.Debug(msg, fields...)
	}
}
