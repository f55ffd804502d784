# A stand-in for OpenWrt's package.mk (see ../rules.mk): BuildPackage makes
# the targets `info` (the package's metadata), `prepare` (unpack the
# source), `compile` (Build/Configure, Build/Compile) and `install`
# (Build/Install when PKG_INSTALL, then Package/NAME/install into
# $(PKG_ROOT)/NAME), as OpenWrt runs them.
PKG_BUILD_DIR ?= $(BUILD_DIR)/$(PKG_NAME)-$(PKG_VERSION)
PKG_INSTALL_DIR ?= $(PKG_BUILD_DIR)/ipkg-install

define BuildPackage
$(eval $(Package/$(1)))
info:
	@echo 'PKG_NAME=$(PKG_NAME)'
	@echo 'PKG_VERSION=$(PKG_VERSION)'
	@echo 'PKG_RELEASE=$(PKG_RELEASE)'
	@echo 'PKG_SOURCE=$(PKG_SOURCE)'
	@echo 'PKG_SOURCE_URL=$(PKG_SOURCE_URL)'
	@echo 'PKG_LICENSE=$(PKG_LICENSE)'
	@echo 'PKG_LICENSE_FILES=$(PKG_LICENSE_FILES)'
	@echo 'SECTION=$(SECTION) CATEGORY=$(CATEGORY) SUBMENU=$(SUBMENU)'
	@echo 'DEPENDS=$(DEPENDS)'
prepare:
	rm -rf $(PKG_BUILD_DIR)
	mkdir -p $(BUILD_DIR)
	tar xzf $(DL_DIR)/$(PKG_SOURCE) -C $(BUILD_DIR)
compile: prepare
	$$(Build/Configure)
	$$(Build/Compile)
install: compile
	$(if $(PKG_INSTALL),$$(Build/Install))
	$$(call Package/$(1)/install,$(PKG_ROOT)/$(1))
endef
