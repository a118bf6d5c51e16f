"""Resource limits of a training process: CPU threads, GPU memory, OS priority. Set by the workstation's agent
in the environment of the SuperNode/launcher it starts; applied by each ClientApp process before TensorFlow
initialises its devices (fl.launcher.warm_up calls apply_limits)."""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger(__name__)

GPU_MEMORY_ENV = "FEDXRAY_GPU_MEMORY_MB"  # cap of TensorFlow's memory per GPU (megabytes)
CPU_THREADS_ENV = "FEDXRAY_CPU_THREADS"


def limit_env(*, cpu_threads: int | None = None, gpu_memory_mb: int | None = None) -> dict[str, str]:
    """Environment variables that cap a training process tree: TensorFlow's intra-op pool to `cpu_threads` and
    its inter-op pool to one, OpenMP/BLAS pools to `cpu_threads`, GPU memory growth on (allocate as needed, not
    all at start) and at most `gpu_memory_mb` per GPU."""
    env = {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    if cpu_threads:
        n = str(int(cpu_threads))
        env.update({CPU_THREADS_ENV: n, "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1",
                    "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n})  # fmt: skip
    if gpu_memory_mb:
        env[GPU_MEMORY_ENV] = str(int(gpu_memory_mb))
    return env


def apply_limits() -> dict:
    """In a training process, before TensorFlow creates its devices: thread pools and the GPU memory cap from
    the environment (limit_env). Returns what was applied."""
    import tensorflow as tf

    applied: dict = {}
    threads = os.environ.get(CPU_THREADS_ENV)
    if threads:
        with contextlib.suppress(RuntimeError, ValueError):  # RuntimeError: TensorFlow already initialised
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
            applied["cpu_threads"] = int(threads)
    cap = os.environ.get(GPU_MEMORY_ENV)
    for gpu in tf.config.list_physical_devices("GPU"):  # no GPU here: untested on real hardware
        try:
            if cap:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=int(cap))])
                applied["gpu_memory_mb"] = int(cap)
            else:
                tf.config.experimental.set_memory_growth(gpu, True)
                applied["gpu_memory_growth"] = True
        except (RuntimeError, ValueError) as exc:
            log.warning("Could not limit %s: %s", gpu.name, exc)
    return applied
