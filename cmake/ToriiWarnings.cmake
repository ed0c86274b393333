# Warning set shared by every torii target (STYLE.md 2.10).
function(torii_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith
    -Wcast-qual -Wwrite-strings -Wformat=2 -Wvla -Wimplicit-fallthrough)
  if(TORII_FUZZ)
    # clang's -Wcast-qual also flags the casts inside OpenSSL's and liburcu's macros; the gcc
    # builds (scripts/test.sh, -Werror) are the warning gate.
    target_compile_options(${target} PRIVATE -Wno-cast-qual)
  endif()
  if(TORII_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(NOT CMAKE_BUILD_TYPE STREQUAL "Debug" AND NOT TORII_SANITIZE)
    target_compile_options(${target} PRIVATE -fstack-protector-strong -D_FORTIFY_SOURCE=2)
  endif()
endfunction()
