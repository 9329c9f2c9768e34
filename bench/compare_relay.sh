#!/usr/bin/env bash
# bench/compare_relay.sh: relay end to end, ringpostd (MX by dnsmasq on loopback) and a
# temporary Postfix (transport map to the sink: no DNS, which favours Postfix) side by side,
# both relaying to one smtp-sink on 127.0.0.2. Prints msgs/s end to end (first message sent
# -> last one counted at the sink), server CPU per message, and the ratio.
#
# Installs what is missing from Debian (Postfix as "No configuration": nothing system-wide
# starts; dnsmasq), then runs bench/compare_relay.py. Stops only what it started and removes
# only its own temporary folder.
#
#   bash bench/compare_relay.sh                         # 20,000 x 4 KiB, 50 sessions, 100 domains
#   bash bench/compare_relay.sh --messages 2000 --rounds 3
#
# Options (passed to compare_relay.py): --messages N [20000] --size B [4096] --sessions S [50]
#   --domains D [100] --rounds R [1] --servers ringpostd,postfix --timeout S [600]
# Environment: RP_BUILD_DIR (where tools/ringpostd and tools/ringpost-bench are) [build].
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$PATH:/usr/sbin:/sbin
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
if ! command -v postfix >/dev/null || ! command -v smtp-sink >/dev/null; then
  echo "compare_relay: installing Postfix from Debian (No configuration)" >&2
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi
if ! command -v dnsmasq >/dev/null; then
  echo "compare_relay: installing dnsmasq-base from Debian" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dnsmasq-base >/dev/null
fi
export RP_BUILD_DIR=${RP_BUILD_DIR:-$root/build}
export RP_SOURCE_DIR=$root
for tool in ringpostd ringpost-bench; do
  [[ -x $RP_BUILD_DIR/tools/$tool ]] || { echo "compare_relay: no $RP_BUILD_DIR/tools/$tool (build first)" >&2; exit 1; }
done
echo "uptime before: $(uptime)"
python3 "$root/bench/compare_relay.py" "$@"
echo "uptime after: $(uptime)"
