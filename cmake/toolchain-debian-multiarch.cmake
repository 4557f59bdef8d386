# Shared part of cmake/toolchain-aarch64.cmake and cmake/toolchain-armhf.cmake
# (which set FV_CROSS_TRIPLET, FV_CROSS_PROCESSOR and FV_CROSS_QEMU first).
#
# Debian multiarch, not a sysroot: the target's libraries and .pc files live
# in /usr/lib/<triplet> (from the :<arch> -dev packages) and its C library in
# /usr/<triplet> (from libc6-dev-<arch>-cross); the cross gcc searches both.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${FV_CROSS_PROCESSOR})
set(CMAKE_C_COMPILER ${FV_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${FV_CROSS_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${FV_CROSS_TRIPLET})

# find_library (mbedtls has no .pc file in Debian 12): only the target's
# library directories, never the build machine's /usr/lib/x86_64-linux-gnu.
set(CMAKE_FIND_ROOT_PATH /usr/${FV_CROSS_TRIPLET})
set(CMAKE_LIBRARY_PATH /usr/lib/${FV_CROSS_TRIPLET} /lib/${FV_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(CMAKE_IGNORE_PATH /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu)

# pkg-config reads only the target's .pc files (and the arch-independent
# ones); set here so a re-run of cmake during the build sees them too.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${FV_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# ctest runs each test binary through qemu-user. No -L /usr/<triplet>: the
# multiarch -dev packages pull in libc6:<arch>, whose loader
# (/lib/ld-linux-*.so.*) qemu then finds at its usual path. With -L, qemu takes
# the loader of libc6-<arch>-cross (2.36-8cross1) while the loader still finds
# libc6:<arch>'s libc.so.6 (2.36-9+deb12u*): the two disagree on glibc's
# private ABI and pthread_create crashes.
find_program(FV_CROSS_QEMU_PATH ${FV_CROSS_QEMU})
if(FV_CROSS_QEMU_PATH)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FV_CROSS_QEMU_PATH})
endif()
