# Cross build for the Raspberry Pi 4 (Cortex-A72: ARMv8.0-A with NEON; no dot product, no
# FP16 arithmetic) with Debian's cross compiler (g++-aarch64-linux-gnu) and the arm64
# multiarch -dev packages (libhwy-dev:arm64, libpcre2-dev:arm64, libgtest-dev:arm64);
# scripts/setup.sh installs them. Tests run under qemu-user, emulating the same CPU.
#
#   cmake --preset aarch64 && cmake --build --preset aarch64 && ctest --preset aarch64
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(PIQUANT_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${PIQUANT_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${PIQUANT_CROSS_TRIPLE}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${PIQUANT_CROSS_TRIPLE})

# Code for the Pi 4's core only: Highway then builds NEON as the baseline target.
set(CMAKE_C_FLAGS_INIT "-mcpu=cortex-a72")
set(CMAKE_CXX_FLAGS_INIT "-mcpu=cortex-a72")

# Debian's multiarch layout: arm64 libraries live beside the host's ones in
# /usr/lib/aarch64-linux-gnu, headers in /usr/include (+ /usr/include/aarch64-linux-gnu),
# so the "sysroot" is / and CMake must look only in the aarch64 directories for libraries.
set(CMAKE_FIND_ROOT_PATH /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_IGNORE_PATH /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu)

# pkg-config (hwy, pcre2) must read the arm64 .pc files, never the host's.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${PIQUANT_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# Runs the test executables (gtest discovery, ctest, and the CLI the tests spawn) on the
# emulated Pi 4 CPU: "-cpu cortex-a72" hides SVE and dotprod, so Highway dispatches to
# NEON exactly as on the board. The arm64 loader and libraries come from libc6:arm64 &
# co. at their multiarch paths (/lib/ld-linux-aarch64.so.1), which qemu finds without -L;
# only when that loader is missing do we point qemu at the cross toolchain's copy.
find_program(PIQUANT_QEMU_AARCH64 qemu-aarch64)
if(NOT PIQUANT_QEMU_AARCH64)
  set(PIQUANT_QEMU_AARCH64 qemu-aarch64)
endif()
set(CMAKE_CROSSCOMPILING_EMULATOR ${PIQUANT_QEMU_AARCH64} -cpu cortex-a72)
if(NOT EXISTS /lib/ld-linux-aarch64.so.1 AND EXISTS /usr/${PIQUANT_CROSS_TRIPLE}/lib/ld-linux-aarch64.so.1)
  list(APPEND CMAKE_CROSSCOMPILING_EMULATOR -L /usr/${PIQUANT_CROSS_TRIPLE})
endif()
