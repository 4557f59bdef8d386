# test_phone_lib.cmake - run by ctest as `cmake -P` (tests/CMakeLists.txt).
#
# The device library (libfieldvault.so, and libfieldvault.a for an app that
# links statically: what a phone app links) holds no server code: the
# server's storage, engine and event loop (server/) are linked into the
# `fieldvault` command only. Fails if
#   1. `nm -D --defined-only` of the shared library names a server function;
#   2. its full symbol table (when the library is not stripped; a build's
#      always has one) names one, the file-local functions included;
#   3. its bytes hold a string only the server's code has.
# A server function is fv_server_*, fv_srv_*, fv_sstore_* (the server
# store's interface), sqls_* (its SQLite implementation), fv_vpool_* (the
# threads that check signatures for the event loop), one of the event
# loop's (server/server.c), or the server's side of TLS
# (server/tls_server.c): listening and accepting (fv_tls_listen,
# fv_tls_accept, fv_tls_server_*), its identity and certificates
# (fv_tls_identity_*, fv_tls_cert_*, fv_tls_csr, fv_tls_hostname_ok and
# the file-local functions that issue certificates), ending a connection
# after an ERROR (fv_tls_shutdown, fv_tls_discard).
#
# Inputs: -DNM=<nm> -DLIB=<libfieldvault.so or libfieldvault.a>
cmake_minimum_required(VERSION 3.18)

set(failures 0)
macro(fail msg)
  message(SEND_ERROR "test_phone_lib: ${msg}")
  math(EXPR failures "${failures} + 1")
endmacro()

if(NOT EXISTS "${LIB}")
  message(FATAL_ERROR "test_phone_lib: no library at ${LIB}")
endif()
get_filename_component(name ${LIB} NAME)

set(server_re "^(fv_server_|fv_srv_|fv_sstore_|sqls_|fv_vpool_|fv_tls_server_|fv_tls_identity_|fv_tls_cert_)")
set(event_loop fv_server_run accept_some enforce_budgets evict_preauth preauth_victim
               conn_service conn_settle raise_fd_limit load_engine cert_tick
               open_server_store out_of_fds
               fv_tls_listen fv_tls_accept fv_tls_csr fv_tls_hostname_ok
               fv_tls_shutdown fv_tls_discard cert_issue san_der cert_cn
               cert_self_issued identity_load identity_unref default_hostname
               file_replace x509_time)

# Names defined in `lib` by `nm ${ARGN}`, into `var`; `ok` is FALSE when nm
# found no symbol table.
function(defined var ok)
  execute_process(COMMAND ${NM} ${ARGN} --defined-only ${LIB}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(REGEX MATCHALL "[^\n]+" lines "${out}")
  set(names)
  foreach(l IN LISTS lines)
    if(l MATCHES "^[0-9a-fA-F]* *[A-Za-z] ([^ ]+)$")
      list(APPEND names ${CMAKE_MATCH_1})
    endif()
  endforeach()
  set(${var} ${names} PARENT_SCOPE)
  if(rc EQUAL 0 AND names)
    set(${ok} TRUE PARENT_SCOPE)
  else()
    set(${ok} FALSE PARENT_SCOPE)
  endif()
endfunction()

function(check what)
  set(found)
  foreach(sym IN LISTS ARGN)
    string(REGEX REPLACE "@.*$" "" sym "${sym}")
    if(sym MATCHES "${server_re}")
      list(APPEND found ${sym})
    else()
      list(FIND event_loop ${sym} at)
      if(at GREATER -1)
        list(APPEND found ${sym})
      endif()
    endif()
  endforeach()
  list(LENGTH ARGN n)
  if(found)
    list(REMOVE_DUPLICATES found)
    string(REPLACE ";" " " found "${found}")
    fail("${name}: ${what} names server code: ${found}")
    set(failures ${failures} PARENT_SCOPE)
  else()
    message(STATUS "ok: ${name}: no server function among the ${n} symbols of ${what}")
  endif()
endfunction()

# ---- 1. exported ------------------------------------------------------------
if(NOT LIB MATCHES "\\.a$")
  defined(dyn dyn_ok -D)
  if(NOT dyn_ok)
    fail("${NM} -D --defined-only ${LIB} lists nothing")
  endif()
  check("nm -D --defined-only" ${dyn})
endif()

# ---- 2. every symbol, hidden and file-local ones too -------------------------
defined(all all_ok)
if(all_ok)
  check("the symbol table" ${all})
else()
  message(STATUS "note: ${name} is stripped: only its exports and strings are checked")
endif()

# ---- 3. strings only the server's code has -------------------------------------
file(STRINGS ${LIB} strs REGEX "fieldvault serve: |pack-%06u|cannot open a pack|server\\.db|localhost\\.localdomain")
if(strs)
  string(REPLACE ";" " | " strs "${strs}")
  fail("${name} holds the server's strings: ${strs}")
else()
  message(STATUS "ok: ${name}: none of the server's strings")
endif()

if(failures GREATER 0)
  message(FATAL_ERROR "test_phone_lib: ${failures} failure(s)")
endif()
