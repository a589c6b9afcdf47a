# `cmake --install` puts headers, libraries, the dptrain program and a CMake package under the
# prefix, so another project writes find_package(dptrain) and links dptrain::dptrain.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS dptrain dptrain_base dptrain_core dptrain_parallel dptrain_trainers
        EXPORT dptrainTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS dptrain_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Training curves as a picture from a metrics file (matplotlib), next to the dptrain program.
install(PROGRAMS ${PROJECT_SOURCE_DIR}/python/dptrain_plot.py DESTINATION ${CMAKE_INSTALL_BINDIR} RENAME dptrain-plot)
foreach(layer core parallel trainers)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${layer}/include/dptrain DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
          FILES_MATCHING PATTERN "*.h")
endforeach()
install(FILES ${PROJECT_BINARY_DIR}/generated/dptrain/core/config.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dptrain/core)

set(DPTRAIN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dptrain)
install(EXPORT dptrainTargets NAMESPACE dptrain:: DESTINATION ${DPTRAIN_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dptrainConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/dptrainConfig.cmake
                              INSTALL_DESTINATION ${DPTRAIN_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dptrainConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dptrainConfig.cmake ${PROJECT_BINARY_DIR}/dptrainConfigVersion.cmake
        DESTINATION ${DPTRAIN_CMAKE_DIR})
