"""Simulation: the MuJoCo scene, the gymnasium environment, the scripted expert, outcomes.

MuJoCo renders offscreen. EGL works headless (Mesa llvmpipe on a CPU-only machine, the vendor
driver on a GPU one); a user who set MUJOCO_GL (osmesa, glfw) keeps their choice. This is set
here, before any module of this package imports mujoco, and nowhere else.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] == "egl":
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
