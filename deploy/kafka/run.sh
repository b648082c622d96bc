#!/usr/bin/env bash
# run.sh: a single-node Apache Kafka 4.x broker (KRaft, broker+controller in one JVM) on
# 127.0.0.1 for featurepipe's end-to-end tests. Needs only Java 17+ and Maven; the jars come
# from Maven Central (pom.xml beside this file) into lib/, cached between runs.
#
# Usage: deploy/kafka/run.sh start|stop|status|tool CLASS [ARGS...]|--help
# See --help below and README.md for the environment variables.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib_dir="$here/lib"
pom="$here/pom.xml"
log4j_conf="$here/log4j2.properties"

host=127.0.0.1
run_dir="${KAFKA_RUN_DIR:-$here/run}"
port="${KAFKA_PORT:-19092}"
controller_port="${KAFKA_CONTROLLER_PORT:-19093}"
sasl_port="${KAFKA_SASL_SSL_PORT:-}" # default KAFKA_PORT + 2, set by check_settings
sasl_user=featurepipe
heap_opts="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
start_timeout="${KAFKA_START_TIMEOUT:-120}"
stop_timeout=20
java="${JAVA:-java}"
mvn="${MVN:-mvn}"

usage() {
	cat <<EOF
Usage: $(basename "$0") COMMAND

A single-node Apache Kafka broker (KRaft, broker and controller in one JVM) on
127.0.0.1, for featurepipe's end-to-end tests. Needs Java 17+ and Maven.

Commands:
  start    Fetch the jars into lib/ if pom.xml changed (Maven), format a fresh
           log dir, start the broker in the background and wait until it answers
           metadata requests (at most KAFKA_START_TIMEOUT seconds). Prints on stdout
             KAFKA_BROKERS=127.0.0.1:PORT                 plaintext listener
             KAFKA_SASL_SSL_BROKERS=127.0.0.1:SASL_PORT   SASL_SSL listener
             KAFKA_SASL_SSL_CA=RUN_DIR/tls/ca.pem         the throw-away CA
             KAFKA_SASL_USERNAME=featurepipe              SCRAM-SHA-256/512 and PLAIN user
             KAFKA_SASL_PASSWORD=...                      its password (random per start)
           everything else goes to stderr. The SASL_SSL listener also takes
           OAUTHBEARER with unsecured (unsigned) JWTs: tests only.
           If the broker is already running it says so, prints the same lines and
           exits 0.
  stop     Stop the broker (SIGTERM, SIGKILL after ${stop_timeout}s) and delete its data,
           so the next start is a fresh, empty broker. kafka.log is kept.
  restart [--kill]
           Stop the broker (SIGTERM, or SIGKILL with --kill) and start it again on
           the same data: topics, offsets and groups survive. For tests that take
           the broker away mid-ingestion.
  status   Print KAFKA_BROKERS=... and exit 0 if the broker is running and answers
           metadata requests; exit 1 if running but not answering; 3 if stopped.
  tool CLASS [ARGS...]
           Run a Java class from the jars with tool logging to the run dir, e.g.
             $(basename "$0") tool org.apache.kafka.tools.TopicCommand \\
               --bootstrap-server 127.0.0.1:19092 --list

Environment:
  KAFKA_PORT             client listener port (default 19092)
  KAFKA_CONTROLLER_PORT  KRaft controller listener port (default 19093)
  KAFKA_SASL_SSL_PORT    SASL_SSL listener port (default KAFKA_PORT + 2)
  KAFKA_RUN_DIR          config, data, pid and logs (default deploy/kafka/run)
  KAFKA_HEAP_OPTS        broker JVM heap flags (default "-Xms256m -Xmx1g")
  KAFKA_START_TIMEOUT    seconds start waits for the broker (default 120)
  JAVA, MVN              java and mvn commands (default: from PATH)

Example:
  export \$(deploy/kafka/run.sh start)   # sets KAFKA_BROKERS, KAFKA_SASL_SSL_* ...
  go test ./...
  deploy/kafka/run.sh stop
EOF
}

log() { echo "run.sh: $*" >&2; }
die() {
	echo "run.sh: error: $*" >&2
	exit 1
}

check_port_var() {
	local name=$1 value=$2
	if ! [[ $value =~ ^[0-9]+$ ]] || ((10#$value < 1 || 10#$value > 65535)); then
		die "$name must be a TCP port number (1-65535), got '$value'"
	fi
}

check_settings() {
	check_port_var KAFKA_PORT "$port"
	check_port_var KAFKA_CONTROLLER_PORT "$controller_port"
	[[ -n $sasl_port ]] || sasl_port=$((10#$port + 2))
	check_port_var KAFKA_SASL_SSL_PORT "$sasl_port"
	[[ $port != "$controller_port" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both $port)"
	[[ $sasl_port != "$port" && $sasl_port != "$controller_port" ]] || die "KAFKA_SASL_SSL_PORT ($sasl_port) must differ from KAFKA_PORT and KAFKA_CONTROLLER_PORT"
	[[ $start_timeout =~ ^[0-9]+$ ]] || die "KAFKA_START_TIMEOUT must be whole seconds, got '$start_timeout'"
	mkdir -p "$run_dir"
	run_dir="$(cd "$run_dir" && pwd)" # absolute: it goes into server.properties and the JVM's cmdline
	pid_file="$run_dir/kafka.pid"
	kafka_log="$run_dir/kafka.log"
	tools_log="$run_dir/tools.log"
	config="$run_dir/server.properties"
	probe_config="$run_dir/probe.properties"
	data_dir="$run_dir/data"
	tls_dir="$run_dir/tls"
}

check_java() {
	command -v "$java" >/dev/null 2>&1 || die "'$java' not found: install Java 17 or newer (or set JAVA)"
	local version major
	version="$("$java" -version 2>&1 | head -n 1)"
	major="$(sed -n 's/.*version "\([0-9]*\).*/\1/p' <<<"$version")"
	if [[ -z $major ]] || ((major < 17)); then
		die "Kafka 4.x needs Java 17 or newer; '$java' is: $version"
	fi
}

# ensure_lib copies the jars pom.xml names into lib/ unless lib/ already holds the jars of
# this exact pom (sha256 in lib/.pom.sha256). The copy goes to a temporary dir first so an
# interrupted download never leaves a half-filled lib/ that looks complete.
ensure_lib() {
	local want have=""
	want="$(sha256sum "$pom" | cut -d ' ' -f 1)"
	[[ -f $lib_dir/.pom.sha256 ]] && have="$(<"$lib_dir/.pom.sha256")"
	if [[ $have == "$want" ]] && compgen -G "$lib_dir/*.jar" >/dev/null; then
		return 0
	fi
	command -v "$mvn" >/dev/null 2>&1 || die "'$mvn' not found: install Maven (or set MVN) to fetch the Kafka jars"
	log "fetching Kafka jars into $lib_dir (Maven; first run only)"
	local tmp="$here/target/lib.$$" out # target/ is git-ignored, like lib/
	rm -rf "$tmp"
	mkdir -p "$here/target"
	# Maven's output is shown only if it fails (-q still prints colour escapes).
	if ! out="$("$mvn" -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1)"; then
		rm -rf "$tmp"
		echo "$out" >&2
		die "mvn dependency:copy-dependencies failed (output above)"
	fi
	echo "$want" >"$tmp/.pom.sha256"
	rm -rf "$lib_dir"
	mv "$tmp" "$lib_dir"
}

# java_tool runs a main class from lib/ with a small heap, logging to tools.log. With
# --timeout SECONDS first it is killed after that long.
java_tool() {
	local limit=()
	if [[ ${1:-} == --timeout ]]; then
		limit=(timeout "$2")
		shift 2
	fi
	"${limit[@]}" "$java" -Xmx256m -XX:TieredStopAtLevel=1 -cp "$lib_dir/*" \
		-Dlog4j2.configurationFile="$log4j_conf" \
		-Dfeaturepipe.kafka.logfile="$tools_log" \
		"$@"
}

# broker_pid prints the pid in kafka.pid and succeeds only if that process is alive (not a
# zombie) and is the broker of this run dir, so a recycled pid is never signalled.
broker_pid() {
	local pid state
	[[ -f $pid_file ]] || return 1
	pid="$(<"$pid_file")"
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
	[[ $state != Z ]] || return 1
	tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "-Dfeaturepipe.kafka.rundir=$run_dir" || return 1
	echo "$pid"
}

# port_open succeeds if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
	timeout 2 bash -c "exec 3<>/dev/tcp/$host/$1" 2>/dev/null
}

# answers_metadata succeeds if the broker lists topics: a Metadata request that only
# succeeds once the broker has registered with the controller and been unfenced. $1, if
# given, caps the seconds it may take (default 20).
answers_metadata() {
	local secs=${1:-20}
	if ((secs > 20)); then secs=20; fi
	if ((secs < 1)); then secs=1; fi
	java_tool --timeout "$secs" org.apache.kafka.tools.TopicCommand \
		--bootstrap-server "$host:$port" --command-config "$probe_config" --list >/dev/null 2>&1
}

# make_tls writes a fresh throw-away CA, a broker certificate it signed (for $host and
# localhost) and a random SASL password into tls/. Called by start only: restart keeps them,
# as the SCRAM credentials in the kept data were made with that password.
make_tls() {
	command -v openssl >/dev/null 2>&1 || die "openssl not found: it makes the SASL_SSL listener's test CA"
	rm -rf "$tls_dir"
	mkdir -p "$tls_dir"
	(
		cd "$tls_dir"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 7 \
			-subj "/CN=featurepipe test CA" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
		openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=$host"
		printf 'subjectAltName=IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' "$host" >broker.ext
		openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem -days 7 -extfile broker.ext
		cat broker.key broker.pem >broker-keystore.pem
		openssl rand -hex 16 >password
		chmod 600 ca.key broker.key broker-keystore.pem password
	) >>"$tools_log" 2>&1 || fail_start "openssl failed making the test CA (see $tools_log)"
}

# print_addresses prints the lines start and status put on stdout.
print_addresses() {
	echo "KAFKA_BROKERS=$host:$port"
	[[ -f $tls_dir/password ]] || return 0 # a broker started by an older run.sh: no SASL_SSL
	echo "KAFKA_SASL_SSL_BROKERS=$host:$sasl_port"
	echo "KAFKA_SASL_SSL_CA=$tls_dir/ca.pem"
	echo "KAFKA_SASL_USERNAME=$sasl_user"
	echo "KAFKA_SASL_PASSWORD=$(<"$tls_dir/password")"
}

write_config() {
	cat >"$config" <<EOF
# Generated by deploy/kafka/run.sh start; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$host:$controller_port
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller_port,SASL_SSL://$host:$sasl_port
advertised.listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller_port,SASL_SSL://$host:$sasl_port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$data_dir

# SASL_SSL for the security tests: a throw-away CA (tls/ca.pem) signed the broker's
# certificate (PEM keystore: unencrypted PKCS#8 key + chain). SCRAM credentials were added
# at format time (StorageTool format --add-scram); PLAIN's user is in the JAAS line below;
# OAUTHBEARER uses Kafka's default unsecured validator (unsigned JWTs: never in production).
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$tls_dir/broker-keystore.pem
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,OAUTHBEARER
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$sasl_user="$(<"$tls_dir/password")";
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="$sasl_user";

# One node: every internal topic has one replica.
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions than the default 50: the first consumer group or transaction
# on a fresh broker is ready sooner.
offsets.topic.num.partitions=6
transaction.state.log.num.partitions=6

# Tests: no wait before the first rebalance.
group.initial.rebalance.delay.ms=0
EOF
	cat >"$probe_config" <<EOF
# Admin client settings for run.sh's readiness probe: fail fast, the caller retries.
request.timeout.ms=5000
default.api.timeout.ms=8000
reconnect.backoff.max.ms=500
EOF
}

fail_start() {
	local pid
	log "$1"
	if [[ -s $kafka_log ]]; then
		echo "----- last 40 lines of $kafka_log -----" >&2
		tail -n 40 "$kafka_log" >&2
		echo "-----" >&2
	fi
	if pid="$(broker_pid)"; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pid_file"
	exit 1
}

# launch_broker starts the JVM on the formatted run dir and waits until it
# answers metadata requests.
launch_broker() {
	# nohup and </dev/null: the broker outlives this script and never reads its stdin.
	# shellcheck disable=SC2086 # heap_opts is a list of JVM flags
	nohup "$java" $heap_opts \
		-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$log4j_conf" \
		-Dfeaturepipe.kafka.logfile="$kafka_log" \
		-Dfeaturepipe.kafka.rundir="$run_dir" \
		-cp "$lib_dir/*" kafka.Kafka "$config" \
		>>"$kafka_log" 2>&1 </dev/null &
	echo $! >"$pid_file"
	log "started Kafka (pid $!), waiting up to ${start_timeout}s for $host:$port to answer metadata requests"

	local deadline=$((SECONDS + start_timeout))
	while ((SECONDS < deadline)); do
		broker_pid >/dev/null || fail_start "Kafka exited during startup"
		if port_open "$port" && answers_metadata $((deadline - SECONDS)); then
			log "Kafka is ready after ${SECONDS}s (log: $kafka_log)"
			print_addresses
			return 0
		fi
		sleep 0.5
	done
	fail_start "Kafka did not answer metadata requests on $host:$port within ${start_timeout}s"
}

cmd_start() {
	local pid
	check_settings
	if pid="$(broker_pid)"; then
		log "Kafka is already running (pid $pid, run dir $run_dir)"
		print_addresses
		return 0
	fi
	check_java
	ensure_lib
	local p
	for p in "$port" "$controller_port" "$sasl_port"; do
		! port_open "$p" || die "$host:$p is already in use by another process (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
	done

	# A fresh broker every start: data left by a crash or kill is dropped too.
	rm -rf "$data_dir" "$pid_file"
	: >"$kafka_log"
	: >"$tools_log"
	make_tls
	write_config

	local cluster_id
	cluster_id="$(java_tool kafka.tools.StorageTool random-uuid)" ||
		fail_start "kafka.tools.StorageTool random-uuid failed (see $tools_log)"
	local pw
	pw="$(<"$tls_dir/password")"
	java_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$config" --standalone \
		--add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$pw]" \
		--add-scram "SCRAM-SHA-256=[name=$sasl_user,password=$pw]" >>"$tools_log" 2>&1 ||
		fail_start "kafka.tools.StorageTool format failed: $(tail -n 5 "$tools_log")"

	launch_broker
}

cmd_stop() {
	local pid
	check_settings
	if pid="$(broker_pid)"; then
		log "stopping Kafka (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		local deadline=$((SECONDS + stop_timeout))
		while ((SECONDS < deadline)) && broker_pid >/dev/null; do
			sleep 0.5
		done
		if broker_pid >/dev/null; then
			log "Kafka did not stop within ${stop_timeout}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			while broker_pid >/dev/null; do
				sleep 0.2
			done
		fi
		log "stopped"
	else
		log "Kafka is not running"
	fi
	rm -rf "$data_dir" "$pid_file" "$config" "$probe_config" "$tls_dir"
}

# cmd_restart stops the broker (SIGKILL with --kill, else SIGTERM) and starts it
# again on the same data: topics, offsets and groups survive. For tests that
# take the broker away mid-ingestion.
cmd_restart() {
	local pid signal=TERM
	[[ "${1:-}" == "--kill" ]] && signal=KILL
	check_settings
	pid="$(broker_pid)" || die "Kafka is not running (run dir $run_dir); use start"
	log "restarting Kafka (pid $pid, SIG$signal), keeping its data"
	kill -"$signal" "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + stop_timeout))
	while ((SECONDS < deadline)) && broker_pid >/dev/null; do
		sleep 0.2
	done
	if broker_pid >/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
		while broker_pid >/dev/null; do
			sleep 0.2
		done
	fi
	local p
	for p in "$port" "$controller_port" "$sasl_port"; do
		for _ in $(seq 1 50); do
			port_open "$p" || break
			sleep 0.2
		done
	done
	launch_broker
}

cmd_status() {
	local pid
	check_settings
	if ! pid="$(broker_pid)"; then
		log "Kafka is not running (run dir $run_dir)"
		return 3
	fi
	if port_open "$port" && answers_metadata; then
		log "Kafka is running (pid $pid) and answers on $host:$port"
		print_addresses
		return 0
	fi
	log "Kafka is running (pid $pid) but does not answer metadata requests on $host:$port"
	return 1
}

cmd_tool() {
	(($# >= 1)) || die "tool needs a Java class name (see --help)"
	check_settings
	check_java
	ensure_lib
	java_tool "$@"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
restart)
	shift
	cmd_restart "$@"
	;;
status) cmd_status ;;
tool)
	shift
	cmd_tool "$@"
	;;
-h | --help | help) usage ;;
"")
	usage >&2
	exit 2
	;;
*)
	log "unknown command '$1'"
	usage >&2
	exit 2
	;;
esac
