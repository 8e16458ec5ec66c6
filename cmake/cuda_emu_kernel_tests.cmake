# The CUDA kernels' tests on the CPU emulator, inside an ordinary build (QWEN3VL_EMU_KERNEL_TESTS,
# on in scripts/test.sh's release stage, so CI runs them): one small executable,
# qwen3vl_emu_kernel_tests, holding the layers the op tests need (core/, kernels/ with the CPU,
# guarded and CUDA backends, train/adamw.cpp) with the CUDA backend built against tests/cuda_emu,
# and tests/test_cuda_kernels.cpp, test_cuda_runtime.cpp and cuda_emu/test_cuda_emu.cpp. CTest
# lists them as Emulated.<Suite>.<Test>. The .cu files are compiled through generated one-line
# .cpp wrappers, so that the same files can still go to nvcc for the real backend of qwen3vl_lib
# (a source file's language is a property of the file, not of the target). The model-level CUDA
# tests (golden parity, 5-step curves) need the whole library built for the emulator:
# scripts/test_cuda_emu.sh (docs/CUDA.md).
function(qwen3vl_add_emulated_kernel_tests)
  set(_root ${PROJECT_SOURCE_DIR})
  file(GLOB _qv_cu CONFIGURE_DEPENDS ${_root}/src/kernels/cuda/*.cu)
  set(_wrappers)
  foreach(_cu ${_qv_cu})
    get_filename_component(_name ${_cu} NAME_WE)
    set(_w ${CMAKE_BINARY_DIR}/emu_kernel_tests/${_name}_cu.cpp)
    file(CONFIGURE OUTPUT ${_w} CONTENT "#include \"${_cu}\"\n")
    list(APPEND _wrappers ${_w})
  endforeach()
  file(GLOB _qv_sources CONFIGURE_DEPENDS ${_root}/src/core/*.cpp ${_root}/src/kernels/*.cpp
       ${_root}/src/kernels/cpu/*.cpp ${_root}/src/kernels/guarded/*.cpp
       ${_root}/src/kernels/cuda/*.cpp)
  file(GLOB _qv_emu CONFIGURE_DEPENDS ${_root}/tests/cuda_emu/*.cpp)
  add_executable(qwen3vl_emu_kernel_tests ${_qv_sources} ${_wrappers} ${_qv_emu}
                 ${_root}/src/train/adamw.cpp ${_root}/tests/test_cuda_kernels.cpp
                 ${_root}/tests/test_cuda_runtime.cpp)
  target_include_directories(qwen3vl_emu_kernel_tests PRIVATE ${_root}/src ${_root}/tests
                             ${_root}/tests/cuda_emu/include ${DNNL_INCLUDE})
  target_compile_definitions(qwen3vl_emu_kernel_tests PRIVATE QWEN3VL_HAS_CUDA=1
                             QWEN3VL_CUDA_EMU=1)
  # As the EMU build (cmake/cuda.cmake): no FMA contraction; GCC does not know "#pragma unroll".
  target_compile_options(qwen3vl_emu_kernel_tests PRIVATE -ffp-contract=off -Wno-unknown-pragmas)
  target_link_libraries(qwen3vl_emu_kernel_tests PRIVATE OpenMP::OpenMP_CXX
                        nlohmann_json::nlohmann_json qwen3vl_blas ${DNNL_LIB} GTest::gtest
                        GTest::gtest_main)
  gtest_discover_tests(qwen3vl_emu_kernel_tests TEST_PREFIX "Emulated." DISCOVERY_TIMEOUT 60
                       PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2")
endfunction()
