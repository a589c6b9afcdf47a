# Finds every dependency once, here, so the layer CMakeLists only link targets.

# --- libtorch (PyTorch 2.11.0 from the project's virtual environment) -------------------------
# scripts/env.sh puts the venv's torch.utils.cmake_prefix_path on CMAKE_PREFIX_PATH; a plain
# `cmake` call finds it too, by asking the venv's python (DPTRAIN_PYTHON) when Torch is not found.
set(DPTRAIN_TORCH_VERSION 2.11.0)
set(DPTRAIN_PYTHON "$ENV{HOME}/.cache/dptrain/torch-${DPTRAIN_TORCH_VERSION}/bin/python"
    CACHE FILEPATH "Python of the virtual environment that holds the pinned torch")
find_package(Torch QUIET)
if(NOT Torch_FOUND AND EXISTS "${DPTRAIN_PYTHON}")
  execute_process(COMMAND "${DPTRAIN_PYTHON}" -c "import torch; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(_rc EQUAL 0)
    list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
  endif()
endif()
find_package(Torch REQUIRED)
# TORCH_LIBRARIES pulls in libtorch_cuda; the kineto/nvtx bits are not needed for linking.
if(NOT Torch_VERSION VERSION_EQUAL DPTRAIN_TORCH_VERSION)
  message(WARNING "dptrain is pinned to libtorch ${DPTRAIN_TORCH_VERSION}; found ${Torch_VERSION}")
endif()
# The directory holding torch/ in site-packages: NCCL and the CUDA runtime wheels live beside it.
get_filename_component(TORCH_CMAKE_PREFIX "${Torch_DIR}/.." ABSOLUTE)
get_filename_component(DPTRAIN_TORCH_SITE "${TORCH_INSTALL_PREFIX}/.." ABSOLUTE)

# --- CUDA (toolkit in /usr/local/cuda; libtorch must be a CUDA build) --------------------------
set(DPTRAIN_HAVE_CUDA OFF)
if(NOT DPTRAIN_WITH_CUDA STREQUAL "OFF")
  set(_torch_has_cuda OFF)
  if(TARGET c10_cuda OR TARGET torch_cuda)
    set(_torch_has_cuda ON)
  endif()
  find_package(CUDAToolkit QUIET)
  if(_torch_has_cuda AND CUDAToolkit_FOUND)
    set(DPTRAIN_HAVE_CUDA ON)
    # libtorch and the toolkit must speak the same CUDA major.minor, or kernels and headers drift.
    file(GLOB _torch_cuda_libs "${DPTRAIN_TORCH_SITE}/nvidia/cu*/lib/libcudart.so.*")
    execute_process(COMMAND "${DPTRAIN_PYTHON}" -c "import torch; print(torch.version.cuda or '')"
                    OUTPUT_VARIABLE DPTRAIN_TORCH_CUDA OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    string(REGEX MATCH "^[0-9]+\\.[0-9]+" _toolkit_mm "${CUDAToolkit_VERSION}")
    if(DPTRAIN_TORCH_CUDA AND NOT DPTRAIN_TORCH_CUDA STREQUAL _toolkit_mm)
      message(FATAL_ERROR "torch was built with CUDA ${DPTRAIN_TORCH_CUDA} but the toolkit is "
                          "${CUDAToolkit_VERSION}: install the matching toolkit or set DPTRAIN_WITH_CUDA=OFF")
    endif()
  elseif(DPTRAIN_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "DPTRAIN_WITH_CUDA=ON but libtorch has CUDA=${_torch_has_cuda} and the CUDA toolkit "
                        "found=${CUDAToolkit_FOUND}")
  endif()
endif()

# --- NCCL: the very library libtorch loads (two NCCLs in one process is trouble) ---------------
set(DPTRAIN_HAVE_NCCL OFF)
if(DPTRAIN_HAVE_CUDA AND NOT DPTRAIN_WITH_NCCL STREQUAL "OFF")
  find_path(DPTRAIN_NCCL_INCLUDE_DIR nccl.h
            HINTS "${DPTRAIN_TORCH_SITE}/nvidia/nccl/include" ${CUDAToolkit_INCLUDE_DIRS} NO_DEFAULT_PATH)
  find_library(DPTRAIN_NCCL_LIBRARY NAMES libnccl.so.2 nccl NAMES_PER_DIR
               HINTS "${DPTRAIN_TORCH_SITE}/nvidia/nccl/lib" ${CUDAToolkit_LIBRARY_DIR} NO_DEFAULT_PATH)
  if(DPTRAIN_NCCL_INCLUDE_DIR AND DPTRAIN_NCCL_LIBRARY)
    set(DPTRAIN_HAVE_NCCL ON)
    add_library(dptrain_nccl INTERFACE)
    target_include_directories(dptrain_nccl INTERFACE "$<BUILD_INTERFACE:${DPTRAIN_NCCL_INCLUDE_DIR}>")
    target_link_libraries(dptrain_nccl INTERFACE "$<BUILD_INTERFACE:${DPTRAIN_NCCL_LIBRARY}>")
  elseif(DPTRAIN_WITH_NCCL STREQUAL "ON")
    message(FATAL_ERROR "DPTRAIN_WITH_NCCL=ON but nccl.h / libnccl were not found next to torch or in the toolkit")
  endif()
elseif(DPTRAIN_WITH_NCCL STREQUAL "ON")
  message(FATAL_ERROR "DPTRAIN_WITH_NCCL=ON needs CUDA (DPTRAIN_WITH_CUDA is ${DPTRAIN_WITH_CUDA}, built: ${DPTRAIN_HAVE_CUDA})")
endif()

# --- MPI, logging, command line, JSON, PNG, tests ------------------------------------------------
set(DPTRAIN_HAVE_MPI OFF)
if(DPTRAIN_WITH_MPI)
  # MPI's CXX component (C++ code calling the C API; the MPI-2 C++ bindings skipped): a downstream
  # project written `project(app CXX)` finds it too, the C component would need C enabled there.
  set(MPI_CXX_SKIP_MPICXX ON)
  find_package(MPI REQUIRED COMPONENTS CXX)
  set(DPTRAIN_HAVE_MPI ON)
endif()
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json REQUIRED)
# toml++ (Debian's libtomlplusplus-dev) for --config files, used header-only: nothing to link or
# carry to machines that run dptrain.
find_path(DPTRAIN_TOMLPLUSPLUS_INCLUDE_DIR toml++/toml.h REQUIRED)
add_library(system::tomlplusplus INTERFACE IMPORTED)
set_target_properties(system::tomlplusplus PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${DPTRAIN_TOMLPLUSPLUS_INCLUDE_DIR}"
                      INTERFACE_COMPILE_DEFINITIONS "TOML_HEADER_ONLY=1;TOML_EXCEPTIONS=1")
find_package(PNG REQUIRED)
find_package(JPEG REQUIRED)  # libjpeg-turbo (Debian's libjpeg-dev): ImageFolder decoding
# A library of a Debian -dev package as an imported target, found by its header and library
# name under CMAKE_PREFIX_PATH or the system's directories. Not pkg-config: on the GPU machines the
# packages are unpacked into a prefix, where their .pc files still point at /usr.
function(dptrain_import_library target header library)
  string(TOUPPER "DPTRAIN_${library}" var)  # DPTRAIN_ZIP_INCLUDE_DIR, DPTRAIN_ZIP_LIBRARY, ...
  find_path(${var}_INCLUDE_DIR ${header} REQUIRED)
  find_library(${var}_LIBRARY ${library} REQUIRED)
  add_library(${target} UNKNOWN IMPORTED)
  set_target_properties(${target} PROPERTIES IMPORTED_LOCATION "${${var}_LIBRARY}"
                                             INTERFACE_INCLUDE_DIRECTORIES "${${var}_INCLUDE_DIR}")
endfunction()
# libprotobuf-dev + protobuf-compiler: TensorBoard event records. Not find_package(Protobuf): the
# Torch package defines its own protobuf::libprotobuf target (for the copy linked into libtorch),
# which would stand in for Debian's.
dptrain_import_library(system::protobuf google/protobuf/message_lite.h protobuf)
find_program(DPTRAIN_PROTOC protoc REQUIRED)
# libzip-dev: per-record CRC checks of torch.save archives (checkpoints). Not its CMake config:
# Debian 12's also imports libzip's command-line tools, which the package does not ship.
dptrain_import_library(system::libzip zip.h zip)
dptrain_import_library(system::isal isa-l/crc.h isal)  # libisal-dev: CRC-32C of TensorBoard records
find_package(Threads REQUIRED)
if(DPTRAIN_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
