"""C++ sources of the avedge CPU and ExecuTorch kernels (a package only so that wheels ship them)."""
