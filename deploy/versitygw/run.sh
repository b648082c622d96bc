#!/usr/bin/env bash
# run.sh: versitygw (github.com/versity/versitygw, Apache-2.0), a real S3-compatible server
# with a posix backend, for featurepipe's snapshot tests and for trying --snapshots s3://
# locally. Built from its Go module with `go install` into .cache/versitygw/bin (git-ignored),
# once per pinned version.
#
# Usage: deploy/versitygw/run.sh build|start|stop|status|--help
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version="${VERSITYGW_VERSION:-v1.8.0}"
cache="${VERSITYGW_CACHE:-$root/.cache/versitygw}"
bin="$cache/bin/versitygw"
run_dir="${S3_RUN_DIR:-$cache/run}"
port="${S3_PORT:-17070}"
access_key="${S3_ACCESS_KEY:-featurepipe}"
secret_key="${S3_SECRET_KEY:-featurepipe-secret}"
region="${S3_REGION:-us-east-1}"
go="${GO:-go}"

usage() {
	cat <<USAGE
Usage: $(basename "$0") COMMAND

versitygw, an S3-compatible server (posix backend: buckets are directories,
objects files) on 127.0.0.1, for featurepipe's snapshot tests. Needs only Go.

Commands:
  build   Build versitygw $version from its Go module into $cache/bin
          unless that version is already there. Prints VERSITYGW=<binary> on stdout.
  start   Build if needed, start the server in the background on S3_PORT with its
          data under S3_RUN_DIR/data, and wait until it answers. Prints the client's
          environment on stdout (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
          AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_S3_USE_PATH_STYLE, VERSITYGW);
          logs go to stderr. Already running: prints the same and exits 0.
  stop    Stop the server and delete its data.
  status  Print the environment and exit 0 if running, exit 3 if stopped.

Environment:
  S3_PORT            listen port (default 17070)
  S3_RUN_DIR         data, pid and log (default .cache/versitygw/run)
  S3_ACCESS_KEY      root access key (default featurepipe)
  S3_SECRET_KEY      root secret key (default featurepipe-secret)
  S3_REGION          region (default us-east-1)
  VERSITYGW_VERSION  module version to build (default $version)
  GO                 go command (default: go from PATH)

Example:
  export \$(deploy/versitygw/run.sh start)
  featurepipe worker ... --snapshots s3://featurepipe/snapshots
  deploy/versitygw/run.sh stop
USAGE
}

log() { echo "run.sh: $*" >&2; }
die() {
	echo "run.sh: error: $*" >&2
	exit 1
}

build() {
	if [[ -x $bin && "$(cat "$cache/version" 2>/dev/null)" == "$version" ]]; then
		return
	fi
	log "building versitygw $version from its Go module into $cache/bin (once)"
	mkdir -p "$cache/bin"
	local start=$SECONDS
	GOBIN="$cache/bin" "$go" install "github.com/versity/versitygw/cmd/versitygw@$version" >&2
	echo "$version" >"$cache/version"
	log "built in $((SECONDS - start))s"
}

env_lines() {
	echo "AWS_ENDPOINT_URL=http://127.0.0.1:$port"
	echo "AWS_ACCESS_KEY_ID=$access_key"
	echo "AWS_SECRET_ACCESS_KEY=$secret_key"
	echo "AWS_REGION=$region"
	echo "AWS_S3_USE_PATH_STYLE=true"
	echo "VERSITYGW=$bin"
}

running() {
	[[ -f $run_dir/pid ]] && kill -0 "$(cat "$run_dir/pid")" 2>/dev/null
}

answers() {
	# The port accepts connections (bash's /dev/tcp: no curl needed).
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

start() {
	build
	if running; then
		log "already running (pid $(cat "$run_dir/pid"))"
		env_lines
		return
	fi
	mkdir -p "$run_dir/data"
	ROOT_ACCESS_KEY="$access_key" ROOT_SECRET_KEY="$secret_key" VGW_REGION="$region" \
		nohup "$bin" --port "127.0.0.1:$port" --quiet posix "$run_dir/data" >"$run_dir/versitygw.log" 2>&1 &
	echo $! >"$run_dir/pid"
	for _ in $(seq 1 300); do
		if answers; then
			log "versitygw $version on 127.0.0.1:$port, data in $run_dir/data"
			env_lines
			return
		fi
		running || die "versitygw exited; see $run_dir/versitygw.log"
		sleep 0.1
	done
	die "versitygw did not answer on 127.0.0.1:$port within 30s; see $run_dir/versitygw.log"
}

stop() {
	if running; then
		local pid
		pid=$(cat "$run_dir/pid")
		kill "$pid"
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
		log "stopped"
	fi
	rm -rf "$run_dir/data" "$run_dir/pid"
}

case "${1:-}" in
build)
	build
	echo "VERSITYGW=$bin"
	;;
start) start ;;
stop) stop ;;
status)
	if running && answers; then
		env_lines
	else
		exit 3
	fi
	;;
-h | --help | help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
