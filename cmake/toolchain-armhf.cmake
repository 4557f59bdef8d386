# Cross-compiling FieldVault for 32-bit ARM, hard float (Debian's armhf), with
# Debian 12's cross toolchain and the :armhf multiarch -dev packages; the tests
# run under qemu-user. scripts/cross-test armhf installs all of it and uses
# this file. On armhf, size_t and long are 32 bits, and so is time_t (Debian 12).
set(FV_CROSS_TRIPLET arm-linux-gnueabihf)
set(FV_CROSS_PROCESSOR arm)
set(FV_CROSS_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-debian-multiarch.cmake)
