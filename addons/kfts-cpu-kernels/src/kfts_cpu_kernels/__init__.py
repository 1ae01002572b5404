"""kfts-cpu-kernels: InceptionTime's memory-bound layers as fused CPU kernels for bf16 training with kfts.

    kernels.c          the kernels: plain C and OpenMP, no Python or torch headers, loaded with ctypes
    ops.py             those kernels as torch operators (torch.library): checks, fake implementations, gradients
    inception_time.py  the layers kfts's InceptionTime network takes from an installed add-on (its one hook)

Installed beside kfts, it is found through the entry point group "kfts.network_ops"; see README.md.
"""
