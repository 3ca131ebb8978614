#!/usr/bin/env bash
# Install, idempotently, every system package the workspace needs on Debian 12.
# Safe to run again: it only calls apt when something is missing.
set -euo pipefail

PACKAGES=(
  # build: openssl-sys, bindgen (libotr-sys, Sequoia's ossl), pkg-config probes
  pkg-config libssl-dev libclang-dev clang
  # the independent ESessions known answers (crates/esessions/tests/kat)
  python3 python3-cryptography
  # OTR through libotr 4.1.1 and its tools (otr_parse, otr_sesskeys, otr_readforge, otr_remac)
  libotr5-dev libgcrypt20-dev libotr5-bin
  # memcheck over the OTR adapter's tests (crates/otr/valgrind.sh)
  valgrind
  # interop peers: GnuPG and the openssl CLI
  gnupg openssl
  # the fifth design (crates/xmldsig): libxmlsec1's CLI and lxml for the independent checks
  xmlsec1 python3-lxml
  # plots: plotters' bitmap backend and a font for chart text
  libfontconfig1-dev libfreetype6-dev fonts-dejavu-core
  # the real-server transport: Prosody 0.12 (and the Lua modules it recommends,
  # so a fresh machine runs the same server as the one the figures came from)
  prosody lua-event lua-unbound
  # the paper (scripts/paper.sh): pdfLaTeX, BibTeX, booktabs/microtype, Times and wasy fonts, latexmk
  texlive-latex-base texlive-latex-recommended texlive-fonts-recommended latexmk
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's prosody package starts a system-wide server on install. The harness
# and the tests run their own throwaway Prosody (scripts/prosody.sh) on free
# loopback ports; the system one is not used, so stop it.
if [ -f /run/prosody/prosody.pid ] && kill -0 "$(cat /run/prosody/prosody.pid)" 2>/dev/null; then
  service prosody stop >/dev/null 2>&1 || true
fi

# The Rust toolchain's own checkers.
for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$c"
  fi
done
echo "setup: ok" >&2
