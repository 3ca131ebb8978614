#!/usr/bin/env bash
# A throwaway Prosody on loopback, for the XMPP transport's tests and measurements.
#
#   scripts/prosody.sh start DIR [PORT [STANZA_LIMIT_BYTES]]   # prints nothing on success
#   scripts/prosody.sh stop DIR
#
# Runs as root in its own directory (config, data, log, pid file under DIR),
# listens on 127.0.0.1 only, serves the virtual host "localhost", registers
# alice, bob and user0..user99 (password "pass"), and waits until the port
# answers. Stop it by its pid file.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}
port=${3:-5222}
limit=${4:-262144}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cfg="$dir/prosody.cfg.lua"

case "$cmd" in
start)
  command -v prosody >/dev/null || { echo "prosody is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
  # The Debian package starts its own service on install: never let it hold our port.
  if [ -f /run/prosody/prosody.pid ]; then kill "$(cat /run/prosody/prosody.pid)" 2>/dev/null || true; fi
  mkdir -p "$dir/data"
  cat > "$cfg" <<CFG
run_as_root = true
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { info = "$dir/prosody.log"; error = "$dir/prosody.err" }
interfaces = { "127.0.0.1" }
c2s_ports = { $port }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { }
http_ports = { }
https_ports = { }
c2s_stanza_size_limit = $limit
modules_enabled = { "roster", "saslauth", "disco", "ping" }
modules_disabled = { "s2s", "offline", "c2s_limits" }
limits = { c2s = { rate = "100000kb/s" } }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
VirtualHost "localhost"
CFG
  for u in alice bob $(seq -f 'user%g' 0 99); do
    prosodyctl --config "$cfg" register "$u" localhost pass >/dev/null
  done
  prosody --config "$cfg" >/dev/null 2>&1 &
  echo $! > "$dir/prosody.pid"
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then exit 0; fi
    if ! kill -0 "$(cat "$dir/prosody.pid")" 2>/dev/null; then
      echo "prosody exited; see $dir/prosody.log" >&2; exit 1
    fi
    sleep 0.1
  done
  echo "prosody did not open 127.0.0.1:$port; see $dir/prosody.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/prosody.pid" ]; then
    pid=$(cat "$dir/prosody.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/prosody.pid"
  fi
  ;;
*) echo "usage: $0 start|stop DIR [PORT [LIMIT]]" >&2; exit 2 ;;
esac
