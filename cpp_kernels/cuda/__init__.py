"""CUDA sources of the avedge kernels (a package only so that wheels ship them)."""
