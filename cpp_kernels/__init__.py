"""avedge.cpp_kernels."""
