# TORII_SANITIZE="address,undefined" or "thread" instruments every target, llhttp included.
if(TORII_SANITIZE)
  add_compile_options(-fsanitize=${TORII_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${TORII_SANITIZE})
endif()
set(TORII_TEST_ENV
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
  "TSAN_OPTIONS=halt_on_error=1:suppressions=${CMAKE_SOURCE_DIR}/tests/tsan.supp")
# TORII_FUZZ instruments everything for libFuzzer's coverage; only the fuzz targets link its
# main (tests/fuzz/CMakeLists.txt).
if(TORII_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "TORII_FUZZ needs clang (CC=clang); scripts/fuzz.sh sets it")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
