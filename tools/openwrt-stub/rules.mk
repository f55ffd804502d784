# A stand-in for OpenWrt's rules.mk, just enough to run a package recipe
# (packaging/openwrt/Makefile) on this machine: tools/check-openwrt sets
# STAGING_DIR (a fake staging directory: Lua 5.1 headers and lua.pc),
# DL_DIR (the `make dist` archive), BUILD_DIR and PKG_ROOT.  The target
# is this machine; the flags are of the kind OpenWrt's toolchain passes.
INCLUDE_DIR := $(TOPDIR)/include
TARGET_CC := cc
TARGET_CFLAGS := -Os -pipe -fno-caller-saves -fno-plt
TARGET_CPPFLAGS := -I$(STAGING_DIR)/usr/include
TARGET_LDFLAGS := -L$(STAGING_DIR)/usr/lib -znow -zrelro
FPIC := -fPIC
# OpenWrt's pkg-config looks only into the staging directory.
PKG_CONFIG := $(STAGING_DIR)/host/bin/pkg-config
export PKG_CONFIG
INSTALL_DIR := install -d -m0755
INSTALL_BIN := install -m0755
INSTALL_DATA := install -m0644
CP := cp -fpR
.SHELLFLAGS := -ec
