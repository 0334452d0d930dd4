#!/bin/sh
# Start a local Mosquitto (unless one already listens on 1883) and run alertd on the
# example configuration. Called by `make demo`.
set -eu
BIN=${1:-.venv/bin}
PATH="$PATH:/usr/sbin"
mkdir -p var/mosquitto
if ! "$BIN/python" -c "import socket; socket.create_connection(('127.0.0.1', 1883), 1)" \
    2>/dev/null; then
  mosquitto -c config/mosquitto.conf -d
  echo "started Mosquitto on 127.0.0.1:1883 (settings: config/mosquitto.conf)"
fi
"$BIN/alertd" check --config config/alertd.example.yaml
"$BIN/alertd" residents import --config config/alertd.example.yaml config/residents.example.csv
cat <<'TXT'

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

The fire panel facp-b3 is offline until its serial line exists; play a capture into it
(a pseudo-terminal at var/panel-b3), and send SIA DC-09 frames to the alarm receiver:

  .venv/bin/alertd simulate serial --link var/panel-b3 config/captures/alarmdecoder.txt
  .venv/bin/alertd simulate dc09 --port 12128 config/captures/dc09.txt

More messages to try are in README.md. Stop with Ctrl-C.

TXT
exec "$BIN/alertd" run --config config/alertd.example.yaml
