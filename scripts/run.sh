#!/usr/bin/env bash
# `make run`: the control plane on the embedded default (bbolt + local artifacts in
# $DATA), the shipped calling-score model pushed and promoted if the registry has
# none, and one scorer. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-.data}
BIN=${BIN:-bin}
CP_ADDR=${CP_ADDR:-127.0.0.1:8080}
SCORER_ADDR=${SCORER_ADDR:-127.0.0.1:8081}
GRPC_ADDR=${GRPC_ADDR:-127.0.0.1:8082}

# reach HOST:PORT prints an address to dial for a listen address: an empty or
# wildcard host (":8080", "0.0.0.0:8080", "[::]:8080") is reached on loopback.
reach() {
  local host=${1%:*} port=${1##*:}
  case $host in
    "" | 0.0.0.0) host=127.0.0.1 ;;
    "[::]") host="[::1]" ;;
  esac
  echo "$host:$port"
}
CP_URL="http://$(reach "$CP_ADDR")"
SCORER_URL="http://$(reach "$SCORER_ADDR")"
export MODELCTL_SERVER=$CP_URL
mkdir -p "$DATA"

# A local admin token, made once and kept in $DATA (mode 600), so the CLI and the
# scorer work without ceremony. Production sets MODELOPS_ADMIN_TOKEN itself.
if [ ! -s "$DATA/admin.token" ]; then
  (umask 077; "$BIN/modelctl" token new > "$DATA/admin.token")
fi
export MODELOPS_ADMIN_TOKEN=$(cat "$DATA/admin.token")
export MODELCTL_TOKEN=$MODELOPS_ADMIN_TOKEN

# Refuse ports in use before starting anything: a second `make run` would
# otherwise find the first one's control plane answering and talk to it with
# the wrong token.
listening() {
  local addr host
  addr=$(reach "$1") && host=${addr%:*} && host=${host#[} && host=${host%]}
  (exec 3<>"/dev/tcp/$host/${addr##*:}") 2>/dev/null
}
for addr in "$CP_ADDR" "$SCORER_ADDR" "$GRPC_ADDR"; do
  if listening "$addr"; then
    echo "something already listens on $addr (another make run?): stop it, or choose other addresses with CP_ADDR=... SCORER_ADDR=... GRPC_ADDR=..." >&2
    exit 1
  fi
done

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

# wait_ready NAME URL PID LOG: wait up to 10 s for URL to answer; stop with the
# process's log if it exits first.
wait_ready() {
  for _ in $(seq 1 100); do
    curl -fsS "$2" >/dev/null 2>&1 && return 0
    if ! kill -0 "$3" 2>/dev/null; then
      echo "the $1 did not start; its log:" >&2
      cat "$4" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "the $1 is not ready after 10 s; it keeps trying (see $4)" >&2
}

"$BIN/modelctl" serve --data "$DATA" --listen "$CP_ADDR" 2>"$DATA/control-plane.log" &
pids+=($!)
wait_ready "control plane" "$MODELCTL_SERVER/healthz" "${pids[0]}" "$DATA/control-plane.log"

if "$BIN/modelctl" list -o json | grep -q '"name": "calling-score"'; then
  echo "registry already has calling-score; leaving it as it is"
else
  "$BIN/modelctl" push models/calling_score/model.onnx --model calling-score --card models/calling_score/card.json
  "$BIN/modelctl" promote calling-score 1 --reason "shipped model, promoted by make run"
fi

if [ ! -s "$DATA/scorer.token" ]; then
  (umask 077; "$BIN/modelctl" token create --name local-scorer --role scorer 2>/dev/null > "$DATA/scorer.token")
fi
MODELOPS_SCORER_TOKEN=$(cat "$DATA/scorer.token") \
  "$BIN/scorer" --control-plane "$MODELCTL_SERVER" --listen "$SCORER_ADDR" --grpc-listen "$GRPC_ADDR" --cache-dir "$DATA/scorer-cache" 2>"$DATA/scorer.log" &
pids+=($!)
wait_ready scorer "$SCORER_URL/readyz" "${pids[1]}" "$DATA/scorer.log"

row=$(printf '0.5,%.0s' $(seq 1 38))0.5
# The CLI's hints name this control plane whenever it is not the CLI's default:
# without MODELCTL_SERVER another terminal's modelctl would ask :8080.
token_file="$(cd "$DATA" && pwd)/admin.token"
cli_env="  export MODELCTL_TOKEN=\$(cat $DATA/admin.token)"
if [ "$MODELCTL_SERVER" != "http://127.0.0.1:8080" ]; then
  cli_env="  export MODELCTL_SERVER=$MODELCTL_SERVER
$cli_env"
fi
cat <<MSG

modelops is running.
  control plane  $MODELCTL_SERVER   (log: $DATA/control-plane.log)
  scorer         $SCORER_URL   (log: $DATA/scorer.log)
  scorer gRPC    $(reach "$GRPC_ADDR")   (OIP v2, inference.GRPCInferenceService)
  dashboard      $MODELCTL_SERVER/   (sign in with the admin token below)

The admin token is in $DATA/admin.token; for the CLI in another terminal:
$cli_env
or, once for every terminal, a context:
  $BIN/modelctl config set-context local --server $MODELCTL_SERVER --token-file $token_file
  $BIN/modelctl config use-context local

Try:
  curl -s $SCORER_URL/v1/score -d '{"features":[$row]}'
  $BIN/modelctl list
  $BIN/modelctl status
  $BIN/modelctl history calling-score

Ctrl-C stops both.
MSG
# Stop when either process exits, or when whatever started us has gone: a
# supervisor that signals only make (timeout, some IDEs) would otherwise leave
# both running.
parent=$PPID
while [ "$(awk '{print $4}' /proc/$$/stat 2>/dev/null || echo "$parent")" = "$parent" ]; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "a process exited; see the logs in $DATA" >&2
      exit 1
    fi
  done
  sleep 1
done
echo "make run's parent has gone; stopping" >&2
