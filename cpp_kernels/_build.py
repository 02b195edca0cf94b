"""Compile the avedge C++ kernels on first use into a per-user cache.

Two shared libraries are built from cpp_kernels/csrc with the system C++ compiler (no ninja,
no setuptools: one g++ call each, run in parallel, ~30 s on 2 cores):

* ``libavedge_torch_ops.so`` -- CPU kernels for PyTorch (TORCH_LIBRARY_IMPL), linked against
  the installed torch;
* ``libavedge_et_ops.so`` -- the same kernels for the ExecuTorch runtime, linked against the
  ``libexecutorch.so`` that the executorch wheel ships.

The cache directory is keyed by a hash of the sources, compiler, flags, torch/executorch
versions and CPU, so an upgrade or an edit rebuilds and a second process reuses the result.
Builds take a file lock and publish atomically (build into a temp name, then rename), so
concurrent test processes never load a half-written library.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
CUDA_SRC = Path(__file__).resolve().parent / "cuda"
CUDA_ARCHS = ("87", "90")  # Jetson Orin, Hopper: what CI compile-checks
CUDA_BINDING = "torch_cuda_ops.cu"
CUDA_KERNELS = "kernels.cu"
CACHE_ENV = "AVEDGE_KERNEL_CACHE"  # overrides ~/.cache/avedge/kernels
DEFAULT_CACHE = Path.home() / ".cache" / "avedge" / "kernels"
TORCH_SOURCE = "torch_ops.cpp"
ET_SOURCE = "et_ops.cpp"
TORCH_LIB = "libavedge_torch_ops.so"
ET_LIB = "libavedge_et_ops.so"
COMMON_FLAGS = ["-O3", "-fPIC", "-shared", "-fvisibility=hidden", "-w"]
BUILD_TIMEOUT_S = 600


class BuildError(RuntimeError):
    """The compiler is present but failed; the message carries its output."""


def find_compiler() -> str | None:
    """The C++ compiler to use: $CXX, else c++ / g++ / clang++ on PATH; None if there is none."""
    for cand in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def _arch_flags(cxx: str) -> list[str]:
    # Tune for this CPU (AVX-512 here, NEON on Jetson): the cache is per machine anyway.
    probe = subprocess.run(
        [cxx, "-march=native", "-x", "c++", "-fsyntax-only", "-"],
        input="", capture_output=True, text=True, check=False,
    )
    return ["-march=native"] if probe.returncode == 0 else []


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = [ln for ln in f if ln.startswith(("flags", "Features", "model name"))][:3]
    except OSError:
        flags = []
    return platform.machine() + "".join(flags)


def _torch_flags() -> list[str]:
    import torch
    from torch.utils import cpp_extension

    lib_dir = Path(torch.__file__).parent / "lib"
    flags = ["-std=c++20"]  # torch 2.13 headers use C++20 features
    flags += [f"-I{p}" for p in cpp_extension.include_paths()]
    flags += [f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
    # at::parallel_for is header-inlined OpenMP: -fopenmp, and torch's own libgomp (already
    # loaded by torch, same soname) so both share one thread pool.
    flags += ["-fopenmp", f"-L{lib_dir}", f"-Wl,-rpath,{lib_dir}"]
    flags += ["-lc10", "-ltorch_cpu", "-ltorch"]
    return flags


def executorch_dirs() -> tuple[Path, Path]:
    """(include dir, lib dir) of the installed executorch wheel."""
    import executorch

    root = Path(next(iter(executorch.__path__)))
    return root / "include", root / "lib"


def _et_flags() -> list[str]:
    inc, lib = executorch_dirs()
    return [
        "-std=c++17",
        f"-I{inc}",
        f"-I{inc}/executorch/runtime/core/portable_type/c10",
        "-DC10_USING_CUSTOM_GENERATED_MACROS",
        f"-L{lib}",
        f"-Wl,-rpath,{lib}",
        "-lexecutorch",
        "-lexecutorch_threadpool",
    ]


def _versions() -> str:
    from importlib import metadata

    out = []
    for dist in ("torch", "executorch"):
        try:
            out.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist}=none")
    return ",".join(out)


def cache_dir(cxx: str, source: str) -> Path:
    """Cache folder of the library built from `source` (keyed per library, so editing the
    ExecuTorch glue does not rebuild the slower torch library)."""
    root = Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE))
    h = hashlib.sha256()
    for src in sorted(CSRC.glob("*.h")) + [CSRC / source]:
        h.update(src.name.encode() + src.read_bytes())
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    for part in (version, " ".join(COMMON_FLAGS), _versions(), _cpu_id(), sysconfig.get_platform()):
        h.update(part.encode())
    return root / h.hexdigest()[:16]


def _command(cxx: str, source: str, target: Path, extra: list[str]) -> list[str]:
    return [cxx, *COMMON_FLAGS, *_arch_flags(cxx), f"-I{CSRC}", str(CSRC / source), "-o", str(target), *extra]


def build(which: tuple[str, ...] = ("torch", "executorch")) -> dict[str, Path]:
    """Build the requested libraries (if not cached) and return {name: path}.

    Raises FileNotFoundError when no compiler exists, BuildError when compilation fails.
    """
    cxx = find_compiler()
    if cxx is None:
        raise FileNotFoundError("no C++ compiler found (set $CXX or install g++)")
    plan = {
        "torch": (TORCH_SOURCE, cache_dir(cxx, TORCH_SOURCE) / TORCH_LIB, _torch_flags),
        "executorch": (ET_SOURCE, cache_dir(cxx, ET_SOURCE) / ET_LIB, _et_flags),
    }
    result = {name: plan[name][1] for name in which}
    for name in which:
        result[name].parent.mkdir(parents=True, exist_ok=True)
    root = Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE))
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per cache dir; others wait, then reuse
        todo = [name for name in which if not plan[name][1].exists()]
        procs = []
        for name in todo:  # independent libraries: compile them in parallel
            source, target, flags = plan[name]
            tmp = target.with_suffix(f".tmp{os.getpid()}.so")
            cmd = _command(cxx, source, tmp, flags())
            procs.append((name, target, tmp, cmd, subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        errors = []
        for name, target, tmp, cmd, proc in procs:
            log, _ = proc.communicate(timeout=BUILD_TIMEOUT_S)
            if proc.returncode != 0:
                tmp.unlink(missing_ok=True)
                errors.append(f"{name}: {' '.join(cmd)}\n{log[-4000:]}")
            else:
                os.replace(tmp, target)
        if errors:
            raise BuildError("building the avedge kernels failed:\n" + "\n".join(errors))
    return result


def find_nvcc() -> str | None:
    """nvcc on PATH or under $CUDA_HOME / /usr/local/cuda; None if absent."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").exists():
            return str(Path(root) / "bin" / "nvcc")
    return None


def nvcc_check_commands(nvcc: str, out_dir: Path) -> list[list[str]]:
    """Compile-only commands for the CUDA sources (no GPU, CPU-only torch is enough).

    The pure kernels build for every arch in CUDA_ARCHS; the torch binding builds with
    AVEDGE_CUDA_COMPILE_CHECK (default stream, no device guard) because CPU torch wheels lack
    c10/cuda's generated headers, for one arch only: its device code is the same kernels.
    """
    import torch
    from torch.utils import cpp_extension

    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in CUDA_ARCHS]
    kernels = [nvcc, "-c", "-std=c++17", "-O3", *gencode, str(CUDA_SRC / CUDA_KERNELS),
               "-o", str(out_dir / "kernels.o")]
    torch_inc = [f"-I{p}" for p in cpp_extension.include_paths()]
    binding = [nvcc, "-c", "-std=c++20", "-O0", "-DAVEDGE_CUDA_COMPILE_CHECK",
               f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
               "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
               "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "--expt-relaxed-constexpr", "-w",
               f"-gencode=arch=compute_{CUDA_ARCHS[-1]},code=sm_{CUDA_ARCHS[-1]}", *torch_inc,
               str(CUDA_SRC / CUDA_BINDING), "-o", str(out_dir / "binding.o")]
    return [kernels, binding]


def build_cuda() -> Path:
    """Build and return the torch CUDA extension (needs a CUDA build of torch, a GPU, ninja)."""
    import torch
    from torch.utils import cpp_extension

    if torch.version.cuda is None:
        raise FileNotFoundError("this torch is a CPU build; the CUDA kernels need a CUDA torch")
    h = hashlib.sha256()
    for src in sorted(CUDA_SRC.glob("*.[ch]*")):
        h.update(src.name.encode() + src.read_bytes())
    h.update(_versions().encode() + str(torch.version.cuda).encode())
    out_dir = Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE)) / ("cuda-" + h.hexdigest()[:16])
    out_dir.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(
        name="avedge_cuda_ops",
        sources=[str(CUDA_SRC / CUDA_BINDING)],
        extra_include_paths=[str(CUDA_SRC)],
        extra_cuda_cflags=["-O3"],
        build_directory=str(out_dir),
        is_python_module=False,  # TORCH_LIBRARY_IMPL registers on load; no Python module
        verbose=False,
    )
    return out_dir / "avedge_cuda_ops.so"
