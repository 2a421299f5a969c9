"""edgevla: from recorded demonstrations to real-time robot control on an embedded CPU.

The pipeline flows one way: sim -> dataset -> train -> deploy -> control/eval.
"""

import os

# MuJoCo renders offscreen. EGL works headless (Mesa llvmpipe on a CPU-only machine, the
# vendor driver on a GPU one); a user who set MUJOCO_GL (osmesa, glfw) keeps their choice.
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] == "egl":
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

__version__ = "0.1.0"
