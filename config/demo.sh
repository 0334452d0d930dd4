#!/bin/sh
# Start a local Mosquitto (unless one already listens on 1883) and run alertd on the
# example configuration. Called by `make demo`.
set -eu
BIN=${1:-.venv/bin}
PATH="$PATH:/usr/sbin"
mkdir -p var/mosquitto
PIDS=""
# everything this script started stops with it (Ctrl-C, or alertd ending)
trap 'kill $PIDS 2>/dev/null || true' EXIT INT TERM
listening() {
  "$BIN/python" -c "import socket; socket.create_connection(('127.0.0.1', 1883), 1)" 2>/dev/null
}
if ! listening; then
  mosquitto -c config/mosquitto.conf > var/mosquitto.log 2>&1 &
  PIDS="$PIDS $!"
  for _ in 1 2 3 4 5 6 7 8 9 10; do listening && break; sleep 0.3; done
  echo "started Mosquitto on 127.0.0.1:1883 (settings: config/mosquitto.conf; stops with the demo)"
fi
# the fire panel facp-b3's serial line: a simulated idle keypad, heard every 5 s
"$BIN/alertd" simulate serial --link var/panel-b3 --delay 0 --repeat 5 \
  config/captures/keypad_idle.txt > var/panel-b3.log 2>&1 &
PIDS="$PIDS $!"
"$BIN/alertd" check --config config/alertd.example.yaml
"$BIN/alertd" residents import --config config/alertd.example.yaml config/residents.example.csv
# demo console accounts, one per role (demo passwords: never use these on site)
for account in "desk duty Wang Qiang" "supervisor supervisor Li Wei" "admin admin Li Wei" \
    "viewer viewer"; do
  set -- $account
  name=$1 role=$2; shift 2
  echo "demo-$name-pass" | "$BIN/alertd" users add "$name" --role "$role" --staff "$*" \
    --password-stdin --config config/alertd.example.yaml >/dev/null 2>&1 || true
done
"$BIN/alertd" web --config config/alertd.example.yaml > var/console.log 2>&1 &
PIDS="$PIDS $!"
cat <<'TXT'

The console (duty desk and supervisors) is at http://127.0.0.1:8090/ (log: var/console.log).
Demo accounts, one per role (account / password):
  desk / demo-desk-pass              duty: acts as Wang Qiang (security); residents' phones
                                     masked (one revealed with a reason), staff phones in full
  supervisor / demo-supervisor-pass  supervisor: Li Wei; analytics, audit, full phones
  admin / demo-admin-pass            admin
  viewer / demo-viewer-pass          viewer: sees the board, no names, no phones, no actions

alertd is starting with config/alertd.example.yaml (devices: config/devices.example.csv,
store: var/alertd.db). In another terminal, report a water leak in flat 1203 of building 3:

  mosquitto_pub -q 1 -t zigbee2mqtt/flat_3b/leak_kitchen -m '{"battery":97,"water_leak":true}'

alertd opens an incident, tells the on-call technician and texts flat 1203 and the flat
below (messages are printed here: no Twilio account is configured). Then look at it all:

  .venv/bin/alertd incidents list --config config/alertd.example.yaml
  .venv/bin/alertd incidents show ID --config config/alertd.example.yaml
  .venv/bin/alertd incidents ack ID --by "Sun Min" --config config/alertd.example.yaml

and at the event, and the dead letter a malformed message leaves:

  .venv/bin/alertd events --config config/alertd.example.yaml
  mosquitto_pub -q 1 -t zigbee2mqtt/flat_3b/leak_kitchen -m '{oops'
  .venv/bin/alertd dead-letters --config config/alertd.example.yaml

The fire panel facp-b3 is a simulated idle keypad on var/panel-b3 (log: var/panel-b3.log).
A panel reporting a fire over IP: send SIA DC-09 frames to the alarm receiver:

  .venv/bin/alertd simulate dc09 --port 12128 config/captures/dc09.txt

More messages to try are in README.md. Stop with Ctrl-C.

TXT
"$BIN/alertd" run --config config/alertd.example.yaml
