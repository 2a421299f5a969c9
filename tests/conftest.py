import os
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")
