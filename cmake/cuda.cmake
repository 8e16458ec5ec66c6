# Finds the CUDA toolkit for the CUDA backend (QWEN3VL_CUDA = AUTO | ON | OFF | EMU) and defines
# qwen3vl_add_cuda_backend(target). Sets QWEN3VL_HAS_CUDA when the backend is built.
#
# EMU (never chosen by AUTO) builds the same backend sources with the host C++ compiler against
# the CUDA emulator in tests/cuda_emu/ (docs/CUDA.md, "Running the backend without a GPU"): the
# kernels run on the CPU, so the CUDA tests run on a machine without a GPU. No nvcc, no NCCL.
#
# Code generation: sm_90 machine code (H100 / H200) plus compute_90 PTX, which the driver
# compiles at load time for later chips. QWEN3VL_CUDA_ARCHITECTURES overrides it ("80;90").
set(QWEN3VL_HAS_CUDA OFF)
set(QWEN3VL_CUDA_EMU OFF)
string(TOUPPER "${QWEN3VL_CUDA}" _qv_cuda_mode)
if(NOT _qv_cuda_mode MATCHES "^(AUTO|ON|OFF|EMU)$")
  message(FATAL_ERROR "QWEN3VL_CUDA must be AUTO, ON, OFF or EMU, got '${QWEN3VL_CUDA}'")
endif()

if(_qv_cuda_mode STREQUAL "EMU")
  set(QWEN3VL_HAS_CUDA ON)
  set(QWEN3VL_CUDA_EMU ON)
elseif(NOT _qv_cuda_mode STREQUAL "OFF")
  # CMake looks for nvcc on the PATH and in $CUDACXX; the toolkit's standard place is added here.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler")
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(QWEN3VL_CUDA_ARCHITECTURES "90" CACHE STRING "CUDA architectures of the CUDA backend")
    set(CMAKE_CUDA_ARCHITECTURES ${QWEN3VL_CUDA_ARCHITECTURES})
    enable_language(CUDA)
    # CMake 3.25 knows nvcc's dialects only up to C++17; nvcc 12+ takes -std=c++20.
    if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
      list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
      set(CMAKE_CUDA20_COMPILE_FEATURES cuda_std_20)
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(QWEN3VL_HAS_CUDA ON)
  elseif(_qv_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "QWEN3VL_CUDA=ON but no CUDA compiler was found (set CUDACXX or put "
                        "nvcc on the PATH)")
  endif()
endif()

if(QWEN3VL_CUDA_EMU)
  set(QWEN3VL_HAS_NCCL OFF)
  message(STATUS "qwen3vl: CUDA backend ON, emulated on the CPU (QWEN3VL_CUDA=EMU, tests/cuda_emu)")
elseif(QWEN3VL_HAS_CUDA)
  # NCCL: the GPU communicator (dist/nccl_communicator.cpp), built when its header and library
  # are found next to the toolkit or in the system folders.
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(QWEN3VL_HAS_NCCL ON)
  else()
    set(QWEN3VL_HAS_NCCL OFF)
  endif()
  message(STATUS "qwen3vl: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures "
                 "${CMAKE_CUDA_ARCHITECTURES}, NCCL ${QWEN3VL_HAS_NCCL})")
else()
  message(STATUS "qwen3vl: CUDA backend OFF (QWEN3VL_CUDA=${QWEN3VL_CUDA})")
endif()

# The emulated backend: the .cu files compiled as C++ (-x c++) against tests/cuda_emu/include, with
# no contraction of a * b + c into an FMA (GCC contracts by default; the kernels' __fmul_rn /
# __fadd_rn rely on it not happening, and nvcc's device code is checked against the CPU ops).
# GCC does not know nvcc's "#pragma unroll" (-Wno-unknown-pragmas on those files only).
function(qwen3vl_add_emulated_cuda_backend target)
  file(GLOB _qv_emu_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/cuda_emu/*.cpp)
  list(FILTER _qv_emu_sources EXCLUDE REGEX "/test_[^/]*\\.cpp$")
  add_library(qwen3vl_cuda_emu STATIC ${_qv_emu_sources})
  target_include_directories(qwen3vl_cuda_emu PUBLIC ${PROJECT_SOURCE_DIR}/tests/cuda_emu/include)
  target_compile_options(qwen3vl_cuda_emu PRIVATE -ffp-contract=off)
  file(GLOB _qv_cu CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/kernels/cuda/*.cu)
  file(GLOB _qv_cpp CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/kernels/cuda/*.cpp)
  set_source_files_properties(${_qv_cu} PROPERTIES LANGUAGE CXX COMPILE_OPTIONS
    "-xc++;-ffp-contract=off;-Wno-unknown-pragmas")
  set_source_files_properties(${_qv_cpp} PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
  target_sources(${target} PRIVATE ${_qv_cu} ${_qv_cpp})
  target_compile_definitions(${target} PUBLIC QWEN3VL_HAS_CUDA=1 QWEN3VL_CUDA_EMU=1)
  target_link_libraries(${target} PUBLIC qwen3vl_cuda_emu)
endfunction()

function(qwen3vl_add_cuda_backend target)
  if(QWEN3VL_CUDA_EMU)
    qwen3vl_add_emulated_cuda_backend(${target})
    return()
  endif()
  file(GLOB _qv_cuda_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/kernels/cuda/*.cu
       ${PROJECT_SOURCE_DIR}/src/kernels/cuda/*.cpp)
  if(QWEN3VL_HAS_NCCL AND EXISTS ${PROJECT_SOURCE_DIR}/src/dist/nccl_communicator.cpp)
    list(APPEND _qv_cuda_sources ${PROJECT_SOURCE_DIR}/src/dist/nccl_communicator.cpp)
    target_include_directories(${target} PRIVATE ${NCCL_INCLUDE_DIR})
    target_link_libraries(${target} PUBLIC ${NCCL_LIBRARY})
    target_compile_definitions(${target} PUBLIC QWEN3VL_HAS_NCCL=1)
  endif()
  target_sources(${target} PRIVATE ${_qv_cuda_sources})
  target_compile_definitions(${target} PUBLIC QWEN3VL_HAS_CUDA=1)
  # The runtime is linked statically (CMake's default for CUDA): the binary needs only the
  # driver and cuBLASLt (and NCCL) at run time.
  target_link_libraries(${target} PUBLIC CUDA::cudart_static CUDA::cublasLt)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-O3 --expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra>)
endfunction()
