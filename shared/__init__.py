"""The project's common library: media decoding, signal maths, data layout, settings, serving client.

Used by training and by every service alike, so that a window is prepared the same way for both.

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, when it is first imported, and leaves oneDNN off by default
on CPUs without AVX-512 VNNI/BF16/AMX (every AMD EPYC of this project's machines): there its Eigen kernels
trained the face model 4x slower (25 vs 99 windows/s) and served 5x slower (97 vs 643 windows/s) on 2 cores.
Every process of the project imports this package before TensorFlow, so this is the one place that turns
oneDNN on; an explicit ``TF_ENABLE_ONEDNN_OPTS=0`` in the environment still wins.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
