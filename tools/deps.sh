#!/bin/sh
# Installs the Debian packages the build, the tests, the demo and the
# packaging checks need, only when some are missing.  apt's own chatter
# (debconf's notes on stderr among it) is shown only when apt fails.
set -e
# python3-pyftpdlib and curl: a real FTP server and client, whose control
# connection makes the kernel's FTP helper expect a data flow (spec/21);
# iputils-ping: ICMP traffic through the test router (spec/20).
PKGS="${DEPS_PKGS:-build-essential pkg-config lua-posix lua-socket liblua5.4-dev lua5.4 libnetfilter-conntrack-dev libmnl-dev \
lua-busted conntrack iproute2 nftables socat procps lua-cqueues lua-luv lua-dkjson \
liblua5.1-0-dev lua5.1 liblua5.3-dev lua5.3 libluajit-5.1-dev luajit luarocks \
lua-http lua-argparse lua-cjson conntrackd prometheus tmux python3-pyftpdlib curl iputils-ping}"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
if [ "$(id -u)" != 0 ]; then
	echo "deps: run as root (or install:$missing)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run_apt() {
	apt-get "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "deps: apt-get $1 failed" >&2; exit 1; }
}
run_apt update -q
run_apt install -y -q --no-install-recommends $missing
