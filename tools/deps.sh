#!/usr/bin/env bash
# tools/deps.sh: installs the Debian packages ringpost builds, tests and benchmarks with.
# Installs only what is missing, so a second run costs one dpkg query.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  liburing-dev libwolfssl-dev libldns-dev libmimalloc-dev libtomlplusplus-dev libargon2-dev
  libspdlog-dev libgtest-dev libgmock-dev googletest libbenchmark-dev
  python3 openssl curl swaks ldnsutils dnsmasq-base postfix fetchmail isync
  dovecot-imapd dovecot-pop3d
  gsasl sasl2-bin libsasl2-modules
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  # Postfix is installed only for its smtp-sink/smtp-source tools and side-by-side
  # benchmarks; it must not configure or start a system mail server.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # Dovecot is installed only for bench/compare_access.sh, which starts its own with a
  # temporary config: a policy-rc.d keeps the package from starting a system Dovecot on
  # 110/143/993/995 (removed again unless it was there before).
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null && $SUDO chmod 755 $policy
    own_policy=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  if ((own_policy)); then $SUDO rm -f $policy; fi
fi
