# ToriiInstallConf.cmake - install-time part of `cmake --install` (run through install(SCRIPT)):
# the systemd unit with its paths rewritten for the install prefix, and the production config,
# which is never overwritten when it already exists (an operator's edits survive a reinstall).
# Evaluated at install time, so `cmake --install BUILD --prefix /usr` gets /usr/sbin and /etc.
# TORII_SOURCE_DIR and TORII_BINARY_DIR are set by the install(CODE) before it.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(sysconf "/etc")
else()
  set(sysconf "${prefix}/etc")
endif()
set(destdir "$ENV{DESTDIR}") # file(INSTALL) adds it by itself; EXISTS does not

file(READ "${TORII_SOURCE_DIR}/conf/torii.service" unit)
string(REPLACE "/usr/sbin/torii" "${prefix}/sbin/torii" unit "${unit}")
string(REPLACE "/etc/torii/" "${sysconf}/torii/" unit "${unit}")
string(REPLACE "file:///usr/share/doc/torii/" "file://${prefix}/share/doc/torii/" unit "${unit}")
file(WRITE "${TORII_BINARY_DIR}/install/torii.service" "${unit}")
file(INSTALL "${TORII_BINARY_DIR}/install/torii.service"
     DESTINATION "${prefix}/lib/systemd/system")

if(EXISTS "${destdir}${sysconf}/torii/torii.json")
  message(STATUS "Kept existing: ${destdir}${sysconf}/torii/torii.json")
else()
  file(INSTALL "${TORII_SOURCE_DIR}/conf/torii.prod.json" DESTINATION "${sysconf}/torii"
       RENAME torii.json FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()
