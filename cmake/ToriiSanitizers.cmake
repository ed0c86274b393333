# TORII_SANITIZE="address,undefined" or "thread" instruments every target, llhttp included.
if(TORII_SANITIZE)
  add_compile_options(-fsanitize=${TORII_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${TORII_SANITIZE})
endif()
set(TORII_TEST_ENV
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
  "TSAN_OPTIONS=halt_on_error=1:suppressions=${CMAKE_SOURCE_DIR}/tests/tsan.supp")
