# Cross-compiling FieldVault for 64-bit ARM (Debian's arm64) with Debian 12's
# cross toolchain and the :arm64 multiarch -dev packages; the tests run under
# qemu-user. scripts/cross-test aarch64 installs all of it and uses this file.
set(FV_CROSS_TRIPLET aarch64-linux-gnu)
set(FV_CROSS_PROCESSOR aarch64)
set(FV_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-debian-multiarch.cmake)
