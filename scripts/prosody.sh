#!/usr/bin/env bash
# A throwaway Prosody on loopback, for the XMPP transport's tests and measurements.
#
#   scripts/prosody.sh start DIR [PORT [STANZA_LIMIT_BYTES [USERS]]]   # prints nothing on success
#   scripts/prosody.sh stop DIR
#
# Runs as root in its own directory (config, data, log, pid file, a self-signed
# certificate for "localhost" under DIR), listens on 127.0.0.1 only, serves the
# virtual host "localhost" with STARTTLS offered but not required, registers
# alice and bob with prosodyctl and user0..user(USERS-1) (default 200) by
# writing Prosody's internal account files (internal_plain: a load test needs
# thousands of accounts in a second, prosodyctl takes ~60 ms each); every
# password is "pass". Waits until the port answers. Stop it by its pid file.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}
port=${3:-5222}
limit=${4:-262144}
users=${5:-200}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cfg="$dir/prosody.cfg.lua"

case "$cmd" in
start)
  command -v prosody >/dev/null || { echo "prosody is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
  # The Debian package starts its own service on install: never let it hold our port.
  if [ -f /run/prosody/prosody.pid ]; then kill "$(cat /run/prosody/prosody.pid)" 2>/dev/null || true; fi
  mkdir -p "$dir/data/localhost/accounts"
  if [ ! -f "$dir/localhost.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
      -addext "subjectAltName=DNS:localhost" -addext "basicConstraints=critical,CA:TRUE" \
      -keyout "$dir/localhost.key" -out "$dir/localhost.crt" 2>/dev/null
  fi
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
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping" }
ssl = { certificate = "$dir/localhost.crt"; key = "$dir/localhost.key" }
modules_disabled = { "s2s", "offline", "c2s_limits" }
limits = { c2s = { rate = "100000kb/s" } }
-- Nagle on (Prosody's default) stalls every stanza larger than one TCP segment
-- by the peer's 40 ms delayed ACK on loopback: a server artefact that would
-- hide protocol differences, so it is off here (and said so in the report).
network_settings = { nagle = false }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
VirtualHost "localhost"
CFG
  for u in alice bob; do
    prosodyctl --config "$cfg" register "$u" localhost pass >/dev/null
  done
  for i in $(seq 0 $((users - 1))); do
    printf 'return {\n\t["password"] = "pass";\n};\n' > "$dir/data/localhost/accounts/user$i.dat"
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
