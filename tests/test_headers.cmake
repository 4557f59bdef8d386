# test_headers.cmake - run by ctest as `cmake -P` (tests/CMakeLists.txt).
#
# 1. Every public header compiles alone (included first, twice) as C11 and as
#    C++11 with -pedantic -Werror -Wall -Wextra, and each option struct's
#    _INIT macro initialises every field (-Wmissing-field-initializers).
# 2. The shared device library, libfieldvault.so, exports exactly the FV_API
#    functions both headers declare. Nothing internal leaks, nothing declared
#    is missing.
# 3. Its soname is libfieldvault.so.1.
#
# Inputs: -DCC= -DCXX= -DNM= -DOBJDUMP= -DSRC=<source dir> -DWORK=<scratch dir>
#         -DCORE_SO=<libfieldvault.so>
cmake_minimum_required(VERSION 3.18)

set(failures 0)
macro(fail msg)
  message(SEND_ERROR "test_headers: ${msg}")
  math(EXPR failures "${failures} + 1")
endmacro()

# A cross build may have no C++ cross compiler: the host's checks the same
# header text.
if(NOT CXX OR NOT EXISTS "${CXX}")
  find_program(host_cxx NAMES c++ g++)
  set(CXX ${host_cxx})
endif()
if(NOT CXX)
  fail("no C++ compiler (scripts/deps installs g++)")
endif()

set(headers core/include/fieldvault.h sync/include/fieldvault_sync.h)
set(includes -I${SRC}/core/include -I${SRC}/sync/include)
set(warn -pedantic -Werror -Wall -Wextra)
file(MAKE_DIRECTORY ${WORK})

# FV_API names declared in a header, in `var`.
function(declared header var)
  file(READ ${SRC}/${header} text)
  string(REGEX MATCHALL "\nFV_API[^;(]*\\(" decls "${text}")
  set(names)
  foreach(d IN LISTS decls)
    string(REGEX MATCH "[A-Za-z_][A-Za-z_0-9]*[ \t]*\\($" name "${d}")
    string(REGEX REPLACE "[ \t]*\\($" "" name "${name}")
    list(APPEND names ${name})
  endforeach()
  list(SORT names)
  set(${var} ${names} PARENT_SCOPE)
endfunction()

# ---- 1. each header alone, C and C++ ---------------------------------------
foreach(h IN LISTS headers)
  get_filename_component(base ${h} NAME_WE)
  get_filename_component(hname ${h} NAME)
  file(READ ${SRC}/${h} text)
  string(REGEX MATCHALL "#define FV_[A-Z_]+_INIT " inits "${text}")
  set(body "")
  foreach(m IN LISTS inits)
    string(REGEX REPLACE "#define (FV_[A-Z_]+)_INIT " "\\1" macro "${m}")
    string(TOLOWER ${macro} type)
    string(APPEND body "    ${type} ${type}_v = ${macro}_INIT;\n    (void)${type}_v;\n")
  endforeach()
  string(CONCAT tu "#include \"${hname}\"\n#include \"${hname}\"\n\n"
                   "int fv_header_test_${base}(void);\n"
                   "int fv_header_test_${base}(void)\n{\n${body}    return FV_OK;\n}\n")
  foreach(lang c cpp)
    set(file ${WORK}/${base}.${lang})
    file(WRITE ${file} "${tu}")
    if(lang STREQUAL "c")
      set(cmd ${CC} -std=c11 ${warn} -Wstrict-prototypes -Wmissing-prototypes)
    elseif(CXX)
      set(cmd ${CXX} -std=c++11 ${warn})
    else()
      continue()
    endif()
    execute_process(COMMAND ${cmd} ${includes} -c ${file} -o ${file}.o
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(rc EQUAL 0)
      message(STATUS "ok: ${hname} alone as ${lang}")
    else()
      fail("${hname} does not compile alone as ${lang}:\n${out}")
    endif()
  endforeach()
endforeach()

# ---- 2. exported symbols ----------------------------------------------------
declared(core/include/fieldvault.h core_api)
declared(sync/include/fieldvault_sync.h sync_api)
set(sync_all ${core_api} ${sync_api})
list(SORT sync_all)

function(check_exports so want)
  execute_process(COMMAND ${NM} -D --defined-only ${so}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    fail("${NM} -D ${so}: ${err}")
    return()
  endif()
  string(REGEX MATCHALL "[^\n]+" lines "${out}")
  set(have)
  foreach(l IN LISTS lines)
    string(REGEX REPLACE "^.* " "" sym "${l}")
    list(APPEND have ${sym})
  endforeach()
  list(SORT have)
  set(extra ${have})
  list(REMOVE_ITEM extra ${want})
  set(missing ${want})
  list(REMOVE_ITEM missing ${have})
  get_filename_component(name ${so} NAME)
  list(LENGTH have n)
  if(extra)
    string(REPLACE ";" " " extra "${extra}")
    fail("${name} exports symbols no header declares: ${extra}")
  endif()
  if(missing)
    string(REPLACE ";" " " missing "${missing}")
    fail("${name} lacks declared functions: ${missing}")
  endif()
  if(NOT extra AND NOT missing)
    message(STATUS "ok: ${name} exports exactly the ${n} declared functions")
  endif()
endfunction()

check_exports(${CORE_SO} "${sync_all}")

# ---- 3. sonames -----------------------------------------------------------
foreach(so IN ITEMS ${CORE_SO})
  get_filename_component(name ${so} NAME)
  string(REGEX REPLACE "\\.so(\\..*)?$" ".so.1" want "${name}")
  execute_process(COMMAND ${OBJDUMP} -p ${so} OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(out MATCHES "SONAME +([^\n]+)" AND CMAKE_MATCH_1 STREQUAL want)
    message(STATUS "ok: ${name} has the soname ${want}")
  else()
    fail("${name}: soname is not ${want}")
  endif()
endforeach()

if(failures GREATER 0)
  message(FATAL_ERROR "test_headers: ${failures} failure(s)")
endif()
