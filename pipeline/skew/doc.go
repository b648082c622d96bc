// Package skew measures training/serving skew: it replays the lookup-log
// topic (what the lookup service served: entity key, request time At and
// every feature value) as a spine through the backfill engine
// (backfill.Compute, the code that builds training data) and compares each
// served value with the value recomputed as of At.
//
// # What counts as a mismatch
//
// A served value and a recomputed value match when both are null, or both are
// numbers within Options.Tolerance of each other (relative, default 1e-9,
// which only absorbs float summation order). Null against a number is always
// a mismatch. A list feature (first_k, last_k; served in the entry's
// "lists") matches when both lists are null, or both have the same length
// and equal elements one by one, exactly: elements are event values (doubles,
// longs, booleans as 0/1), never sums, so no tolerance applies. A string
// feature (last, first, first_k, last_k of a string field; served in the
// entry's "strings" or "string_lists") matches when both are null or both
// are equal byte for byte (a list: element by element). A bucketed feature
// (a map, served in "buckets", "bucket_strings", "bucket_lists",
// "bucket_string_lists" or "bucket_tops") matches when both maps are null,
// or both have the same bucket keys and every bucket's values match by the
// rule of the kind (numbers within the tolerance, strings and lists
// exactly, a top_k as compareTop compares one). The report gives, per feature: rows compared, mismatches, the
// largest absolute and relative differences among rows where both values are
// numbers, and the first mismatching examples in (At, key) order.
//
// # Why values differ
//
// In backfill.ModeEvent the recomputation includes every event with event
// time before At, including events that arrived (Kafka record timestamp)
// after the lookup ran: late events make event mode differ from what was
// served, which is the skew a model trained on event-time backfills sees.
// backfill.ModeArrival also excludes events that arrived after At and so
// reproduces the served values, up to one remaining gap: an event that
// arrived before At but that the worker had not yet applied and published
// (consumer lag plus the publish interval) was not served yet, and shows as a
// mismatch in both modes. Mismatches in arrival mode therefore measure
// pipeline lag or a bug; mismatches in event mode also measure lateness.
//
// # Cost
//
// Run reads the lookup log from Options.Since up to the end offsets listed
// when it starts, holds every entry in memory, then runs one backfill.Compute
// per entity (replaying the needed source offsets once per entity). Memory is
// O(entries x features) plus the backfill's events of the logged keys.
package skew
