# Installs the pinned node-llama-cpp (stock llama.cpp, prebuilt) into INSTALL_DIR.
# Run as: cmake -DSOURCE_DIR=... -DINSTALL_DIR=... -DNPM=... -P npm_install.cmake
#
# Idempotent: a stamp (a copy of the lock file, written only after a successful
# install) makes a repeated run a no-op while the lock is unchanged and the
# package is still in place. An interrupted install leaves no stamp, so the next
# run starts over.
cmake_minimum_required(VERSION 3.25)

foreach(var SOURCE_DIR INSTALL_DIR NPM)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "npm_install.cmake: ${var} is not set")
  endif()
endforeach()
if(NOT EXISTS "${NPM}")
  message(FATAL_ERROR "npm_install.cmake: npm was not found when the project was configured "
                      "(install Node.js >= 18 with npm, or configure with -DPIQUANT_INTEROP_TESTS=OFF)")
endif()

set(lock "${SOURCE_DIR}/package-lock.json")
set(stamp "${INSTALL_DIR}/installed-package-lock.json")
set(addon "${INSTALL_DIR}/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node")
set(entry "${INSTALL_DIR}/node_modules/node-llama-cpp/dist/index.js")

if(EXISTS "${stamp}" AND EXISTS "${addon}" AND EXISTS "${entry}")
  file(SHA256 "${lock}" lock_hash)
  file(SHA256 "${stamp}" stamp_hash)
  if(lock_hash STREQUAL stamp_hash)
    message(STATUS "node-llama-cpp already installed in ${INSTALL_DIR}")
    return()
  endif()
endif()

file(REMOVE "${stamp}")
file(MAKE_DIRECTORY "${INSTALL_DIR}")
file(COPY_FILE "${SOURCE_DIR}/package.json" "${INSTALL_DIR}/package.json")
file(COPY_FILE "${lock}" "${INSTALL_DIR}/package-lock.json")

# `npm install` with the committed lock, not `npm ci`: the lock only lists the
# platform packages the registry had when it was made (no mac/win/riscv builds of
# 3.22.1), which `npm ci` rejects as out of sync while `npm install` keeps every
# locked version and skips the missing optional ones.
# --ignore-scripts and NODE_LLAMA_CPP_SKIP_DOWNLOAD/POSTINSTALL: node-llama-cpp's
# postinstall would otherwise look for (and possibly download or compile)
# llama.cpp; the prebuilt @node-llama-cpp/linux-x64 package is all we use.
# --omit=optional leaves out the CUDA/Vulkan binaries (gigabytes).
string(TIMESTAMP started "%s")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -E env
          NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
          NODE_LLAMA_CPP_POSTINSTALL=skip
          npm_config_update_notifier=false
          "${NPM}" install --ignore-scripts --no-audit --no-fund --omit=optional --loglevel=error
  WORKING_DIRECTORY "${INSTALL_DIR}"
  RESULT_VARIABLE npm_result)
if(NOT npm_result EQUAL 0)
  message(FATAL_ERROR "npm install in ${INSTALL_DIR} failed (${npm_result}); "
                      "the registry must be reachable for the first install")
endif()
foreach(required "${addon}" "${entry}")
  if(NOT EXISTS "${required}")
    message(FATAL_ERROR "npm install finished but ${required} is missing")
  endif()
endforeach()

file(COPY_FILE "${lock}" "${stamp}")
string(TIMESTAMP finished "%s")
math(EXPR seconds "${finished} - ${started}")
message(STATUS "installed node-llama-cpp into ${INSTALL_DIR} in ${seconds} s")
