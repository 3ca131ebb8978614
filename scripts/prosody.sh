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
# password is "pass". Loads mod_e2elab_bytes (written below): Prosody 0.12 has
# no byte counters, this module counts each session's bytes in Prosody's own
# bytes/in and bytes/out filters and answers them to the session on an iq.
# Waits until the port answers. Stop it by its pid file.
# With E2ELAB_PROSODY_OFFLINE=1 it also keeps messages for offline users
# (mod_offline: XEP-0160 storage, XEP-0203 delay stamps), which the
# measurements leave off: only `e2elab requirements` (Offline Sessions) uses it.
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
  mkdir -p "$dir/data/localhost/accounts" "$dir/plugins"
  cat > "$dir/plugins/mod_e2elab_bytes.lua" <<'LUA'
-- mod_e2elab_bytes: the bytes Prosody's c2s layer read from and wrote to each
-- client session, counted in its "bytes/in" and "bytes/out" filters (XML
-- text: inside TLS, after decryption / before encryption), answered to the
-- session itself on
--   <iq type='get' to='HOST'><query xmlns='urn:e2elab:bytes'/></iq>
-- with <query xmlns='urn:e2elab:bytes' in='N' out='N'/>, N zero-padded to 15
-- digits so that every answer has the same size. Part of xmpp-e2e-lab's test
-- server (scripts/prosody.sh); Prosody 0.12 has no byte counters of its own.
local filters = require "util.filters";
local st = require "util.stanza";
local xmlns = "urn:e2elab:bytes";

local function init(session)
	session.e2elab_in, session.e2elab_out = 0, 0;
	filters.add_filter(session, "bytes/in", function (data)
		session.e2elab_in = session.e2elab_in + #data;
		return data;
	end, 1000);
	filters.add_filter(session, "bytes/out", function (data)
		session.e2elab_out = session.e2elab_out + #data;
		return data;
	end, -1000);
end

filters.add_filter_hook(init);

function module.unload()
	filters.remove_filter_hook(init);
end

module:hook("iq-get/host/" .. xmlns .. ":query", function (event)
	local origin, stanza = event.origin, event.stanza;
	origin.send(st.reply(stanza):tag("query", {
		xmlns = xmlns;
		["in"] = string.format("%015d", origin.e2elab_in or 0);
		out = string.format("%015d", origin.e2elab_out or 0);
	}));
	return true;
end);
LUA
  if [ ! -f "$dir/localhost.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
      -addext "subjectAltName=DNS:localhost" -addext "basicConstraints=critical,CA:TRUE" \
      -keyout "$dir/localhost.key" -out "$dir/localhost.crt" 2>/dev/null
  fi
  offline_on=""
  offline_off=', "offline"'
  if [ "${E2ELAB_PROSODY_OFFLINE:-}" = 1 ]; then
    offline_on=', "offline"'
    offline_off=""
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
plugin_paths = { "$dir/plugins" }
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "e2elab_bytes"$offline_on }
ssl = { certificate = "$dir/localhost.crt"; key = "$dir/localhost.key" }
modules_disabled = { "s2s"$offline_off }
-- Nagle on (Prosody's default) stalls every stanza larger than one TCP segment
-- by the peer's 40 ms delayed ACK on loopback (measured here: ~50 ms for a
-- 16 KiB message instead of ~2 ms): a server artefact that would hide protocol
-- differences, so it is off here, and the report says so.
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
  rm -f "$dir/prosody.log" "$dir/prosody.err"
  prosody --config "$cfg" >/dev/null 2>&1 &
  pid=$!
  echo "$pid" > "$dir/prosody.pid"
  # With E2ELAB_OWNER_PID set (the harness sets it), the server dies with its
  # owner even when the owner is killed: no root Prosody is left behind.
  if [ -n "${E2ELAB_OWNER_PID:-}" ]; then
    nohup bash -c 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; kill "$2" 2>/dev/null' \
      watchdog "$E2ELAB_OWNER_PID" "$pid" >/dev/null 2>&1 &
  fi
  # Ready when *this* server logged that it listens on the port (not just any
  # process answering there) and the port answers.
  for _ in $(seq 1 100); do
    if grep -q "Activated service 'c2s' on \[127.0.0.1\]:$port\$" "$dir/prosody.log" 2>/dev/null \
      && (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
      exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "prosody exited; see $dir/prosody.log" >&2; exit 1
    fi
    if grep -q "Failed to open server port" "$dir/prosody.log" "$dir/prosody.err" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      echo "prosody could not bind 127.0.0.1:$port" >&2; exit 3
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  echo "prosody did not open 127.0.0.1:$port; see $dir/prosody.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/prosody.pid" ]; then
    pid=$(cat "$dir/prosody.pid")
    # Only ever signal the Prosody started with this directory's config.
    ours() { tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config $cfg"; }
    if ours; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do ours || break; sleep 0.1; done
      if ours; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$dir/prosody.pid"
  fi
  ;;
*) echo "usage: $0 start|stop DIR [PORT [LIMIT]]" >&2; exit 2 ;;
esac
