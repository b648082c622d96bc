// Package e2e holds featurepipe's end-to-end tests: real brokers (the
// embedded kfake broker by default, Apache Kafka when KAFKA_BROKERS is set),
// real workers and lookup services, every feature value checked against a
// brute-force computation over the events that were produced.
package e2e
