#!/bin/sh
# Installs the Debian packages the build, the tests and the demo need,
# only when some are missing.
set -e
PKGS="${DEPS_PKGS:-build-essential pkg-config liblua5.4-dev lua5.4 libnetfilter-conntrack-dev libmnl-dev \
lua-busted conntrack iproute2 nftables socat procps lua-cqueues lua-luv lua-dkjson \
liblua5.1-0-dev lua5.1 liblua5.3-dev lua5.3 libluajit-5.1-dev luajit \
lua-http lua-socket lua-argparse prometheus tmux}"
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
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends $missing >/dev/null
