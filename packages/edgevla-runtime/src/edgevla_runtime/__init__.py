"""edgevla-runtime: what runs on the robot's board. numpy and ONNX Runtime, never torch.

features / observation: the data contract (keys, shapes, dtypes) and its checks.
runner: the PolicyRunner protocol every policy implements (PyTorch, ONNX bundle, remote).
control: the action queue, chunk aggregation, schedules, clocks and the one control loop.
"""

__version__ = "0.1.0"
