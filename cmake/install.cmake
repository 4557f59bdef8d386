# install.cmake - what `cmake --install BUILD --prefix P` puts under P
# (docs/API.md, "Installing"): the two public headers, the device library
# (static and shared), its pkg-config file, a CMake package, and the
# fieldvault binary.
include(CMakePackageConfigHelpers)

if(FV_FUZZ) # signatures are not checked in the fuzz build: never install it
  install(CODE "message(FATAL_ERROR \"a fuzz build (FV_FUZZ) is not installable\")")
  return()
endif()

set(FV_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/FieldVault)
set(FV_PKGCONFIGDIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(FILES ${PROJECT_SOURCE_DIR}/core/include/fieldvault.h
              ${PROJECT_SOURCE_DIR}/sync/include/fieldvault_sync.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

install(TARGETS fieldvault_shared EXPORT FieldVaultTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS fieldvault ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS fieldvault_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The pkg-config file finds the prefix from their own place, so the tree can be
# installed under any --prefix and moved.
file(RELATIVE_PATH FV_PC_TO_PREFIX /${FV_PKGCONFIGDIR} /)
string(REGEX REPLACE "/$" "" FV_PC_TO_PREFIX "${FV_PC_TO_PREFIX}")
get_filename_component(FV_MBEDTLS_LIBDIR ${MBEDTLS_LIB} DIRECTORY)
foreach(pc fieldvault)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/${pc}.pc.in ${PROJECT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${pc}.pc DESTINATION ${FV_PKGCONFIGDIR})
endforeach()

install(EXPORT FieldVaultTargets NAMESPACE FieldVault:: DESTINATION ${FV_CMAKEDIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/FieldVaultConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/FieldVaultConfig.cmake
                              INSTALL_DESTINATION ${FV_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/FieldVaultConfigVersion.cmake
                                 COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/FieldVaultConfig.cmake
              ${PROJECT_BINARY_DIR}/FieldVaultConfigVersion.cmake
        DESTINATION ${FV_CMAKEDIR})
