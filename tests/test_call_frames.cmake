# test_call_frames: every public function that takes a vault handle (or a
# sync session, whose vault keeps its message) and returns a result is a
# one-line FV_CALL wrapper over its body (core/call.h), so that the
# handle's message always describes the call that just returned
# (docs/API.md, "Result codes and messages"). A function added to a
# public header without the wrapper fails here.
#   cmake -DSRC=<source dir> -P test_call_frames.cmake
set(sources "")
foreach(dir core sync)
  file(GLOB files ${SRC}/${dir}/*.c)
  foreach(f ${files})
    file(READ ${f} text)
    string(APPEND sources "${text}\n")
  endforeach()
endforeach()
set(checked 0)
set(missing "")
foreach(h ${SRC}/core/include/fieldvault.h ${SRC}/sync/include/fieldvault_sync.h)
  file(READ ${h} text)
  string(REGEX MATCHALL "FV_API int fv_[a-z_]+\\([^;]*;" decls "${text}")
  foreach(d ${decls})
    if(NOT d MATCHES "[(,][ \n]*(fv_vault|fv_sync_session) \\*[a-z]")
      continue()
    endif()
    string(REGEX REPLACE "^FV_API int (fv_[a-z_]+)\\(.*" "\\1" name "${d}")
    math(EXPR checked "${checked} + 1")
    if(NOT sources MATCHES "\nint ${name}\\([^{]*\\)\n{\n    return FV_CALL\\(")
      list(APPEND missing ${name})
    endif()
  endforeach()
endforeach()
if(checked LESS 40)
  message(FATAL_ERROR "only ${checked} public calls on a handle found: the headers' form changed")
endif()
if(missing)
  message(FATAL_ERROR "not wrapped in FV_CALL (core/call.h): ${missing}")
endif()
message(STATUS "${checked} public calls on a handle, each an FV_CALL wrapper")
